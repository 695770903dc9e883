// char_rnn: a character-level LSTM language model (embedding, LSTM, linear read-out) trained
// by truncated backpropagation through time, evaluated on a held-out tail, then sampled.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "example_args.h"
#include "example_train.h"
#include "gpudl/gpudl.h"

namespace {

using namespace gpudl;

// Used when no text file is given or found, so the example runs on a fresh machine. Written
// for this example; repetitive enough that a small model learns it in a minute.
constexpr const char* kBuiltinText =
    "The rain came down on the harbour town all night, and in the morning the boats lay still.\n"
    "A fisherman walked along the wall and counted them: seven red, four blue, one grey.\n"
    "The grey one was his. He had painted it himself, three summers ago, and never again.\n"
    "\"Paint is for people who stay ashore,\" he told his daughter when she asked him why.\n"
    "She laughed, because she knew he said it only so that he would not have to paint.\n"
    "The wind turned in the afternoon. The clouds broke, the water went from grey to green,\n"
    "and one by one the boats went out past the lighthouse, red and blue and grey.\n";

struct Model {
  Sequential net;
  Recurrent* lstm = nullptr;
};

Model make_model(std::int64_t vocab, std::int64_t embed, std::int64_t hidden, std::int64_t layers, float dropout) {
  Model m;
  m.net.add(Embedding(vocab, embed));
  m.net.add(LSTM(embed, hidden, {.num_layers = layers, .dropout = dropout}));
  m.net.add(Linear(hidden, vocab));
  m.lstm = &dynamic_cast<Recurrent&>(m.net[1]);
  return m;
}

std::string describe_model(Model& m) {
  std::string s;
  for (std::size_t i = 0; i < m.net.size(); ++i) s += (i ? " -> " : "") + m.net[i].describe();
  return s;
}

// Generates `length` characters after `prompt`, drawing each from softmax(logits / temperature).
std::string sample(Model& m, const data::CharCorpus& corpus, const std::string& prompt, std::int64_t length,
                   double temperature, std::uint64_t seed) {
  m.net.eval();
  m.lstm->reset_state();
  Generator gen(seed);
  Tensor u = Tensor::empty({1});
  std::string out = prompt;
  std::vector<std::int32_t> feed;
  for (char c : prompt) feed.push_back(corpus.id(c));
  for (std::int64_t i = 0; i < length; ++i) {
    const std::int64_t n = static_cast<std::int64_t>(feed.size());
    const Tensor logits = m.net.forward(Tensor::from_vector(feed, {n, 1}));
    m.lstm->carry_state();
    const std::vector<float> all = logits.to(Device::cpu()).to_vector<float>();
    const std::int64_t v = corpus.vocab_size();
    const float* last = all.data() + (n - 1) * v;
    const float top = *std::max_element(last, last + v);
    std::vector<double> p(static_cast<std::size_t>(v));
    double sum = 0.0;
    for (std::int64_t j = 0; j < v; ++j) sum += p[static_cast<std::size_t>(j)] = std::exp((last[j] - top) / temperature);
    ops::uniform_(u, 0.0f, 1.0f, gen);
    double r = u.to_vector<float>()[0] * sum;
    std::int32_t pick = static_cast<std::int32_t>(v - 1);
    for (std::int64_t j = 0; j < v; ++j) {
      r -= p[static_cast<std::size_t>(j)];
      if (r <= 0.0) {
        pick = static_cast<std::int32_t>(j);
        break;
      }
    }
    out += corpus.decode({pick});
    feed = {pick};
  }
  m.lstm->reset_state();
  m.net.train();
  return out;
}

// $GPUDL_DATA_DIR/text/tinyshakespeare.txt, else ../shared/data/text/…, else "" (built-in text).
std::string default_text_path() {
  const char* env = std::getenv("GPUDL_DATA_DIR");
  const std::string dir = env != nullptr && *env != '\0' ? env : "../shared/data";
  const std::string path = dir + "/text/tinyshakespeare.txt";
  return std::filesystem::exists(path) ? path : "";
}

}  // namespace

int main(int argc, char** argv) try {
  examples::Args args("char_rnn", "Trains a character-level LSTM language model and samples from it.");
  args.option("data", "", "plain-text file; default $GPUDL_DATA_DIR (else ../shared/data)/text/tinyshakespeare.txt, else a built-in text")
      .option("device", "auto", "auto, cpu, cuda or cuda:N")
      .option("precision", "auto", examples::kPrecisionHelp)
      .option("epochs", "10", "passes over the training text (--minutes may stop it sooner)")
      .option("minutes", "0", "stop training after this many minutes (0: no limit); --resume continues from the stop's checkpoint")
      .option("batch", "32", "parallel streams per step on each rank (mpirun: x ranks in all)")
      .option("accumulate", "1", std::string(examples::kAccumulateHelp) + "; only 1 under truncated BPTT")
      .option("steps", "128", "characters per truncated-BPTT chunk")
      .option("embed", "64", "embedding width")
      .option("hidden", "256", "LSTM units per layer")
      .option("layers", "1", "stacked LSTM layers")
      .option("dropout", "0", "dropout between LSTM layers")
      .option("lr", "0.002", "Adam learning rate (cosine-annealed over --epochs)")
      .option("clip", "5", "global gradient-norm clip (0: none)")
      .option("holdout", "0.1", "fraction of the text, from its end, held out for evaluation")
      .option("sample", "400", "characters to sample after training (0: none)")
      .option("temperature", "0.8", "sampling temperature")
      .option("seed", "1", "seed for initialisation and sampling")
      .option("metrics", "", "JSON-lines metrics file")
      .option("tensorboard", "", examples::kTensorBoardHelp)
      .option("ema", "0", examples::kEmaHelp)
      .option("checkpoint", "", "safetensors checkpoint written after each epoch and at a --minutes stop (atomically)")
      .option("resume", "", "checkpoint to continue from (its vocabulary must match the text)")
      .option("export-onnx", "", examples::kExportOnnxHelp);
  args.parse(argc, argv);

  // Every flag is read and checked here, before the corpus is read or a model built.
  const std::uint64_t seed = args.unsigned_integer("seed");
  const double holdout = args.number("holdout");
  args.require(holdout > 0.0 && holdout < 1.0, "holdout", "a fraction in (0, 1)");
  const double temperature = args.number("temperature");
  args.require(temperature > 0.0, "temperature", "a number > 0");  // not found out only after training
  const std::int64_t batch = args.integer("batch", 1), steps = args.integer("steps", 1);
  // A stream's chunks follow one another, each starting from the state the previous one left:
  // they are no independent samples whose gradients could be summed as one batch.
  args.require(examples::accumulate(args) == 1, "accumulate",
               "1 (truncated BPTT carries each stream's state from chunk to chunk; raise --batch instead)");
  const std::int64_t embed = args.integer("embed", 1), hidden = args.integer("hidden", 1);
  const std::int64_t layers = args.integer("layers", 1);
  const int epochs = static_cast<int>(args.integer("epochs", 1, std::numeric_limits<int>::max()));
  const double dropout = args.number("dropout");
  args.require(dropout >= 0.0 && dropout < 1.0, "dropout", "a probability in [0, 1)");
  const double lr = args.number("lr");
  args.require(lr > 0.0, "lr", "a number > 0");
  const double clip = args.number("clip");
  args.require(clip >= 0.0, "clip", "a number >= 0 (0: no clipping)");
  const double minutes = args.number("minutes");
  args.require(minutes >= 0.0, "minutes", "a number >= 0 (0: no limit)");
  const std::int64_t sample_chars = args.integer("sample");
  examples::check_trainer_files(args);
  // Last: "auto" prints a note when there is no GPU, which should not come before a typo's error.
  const Device device = Device::parse(args.str("device"));
  const Precision precision = examples::precision(args, device);

  std::string path = args.str("data").empty() ? default_text_path() : args.str("data");
  const data::CharCorpus corpus =
      path.empty() ? data::CharCorpus::from_text(kBuiltinText, "the built-in text") : data::CharCorpus::from_file(path);
  const std::int64_t split = static_cast<std::int64_t>(static_cast<double>(corpus.size()) * (1.0 - holdout));
  const std::vector<std::int32_t> train_ids(corpus.ids().begin(), corpus.ids().begin() + split);
  const std::vector<std::int32_t> held_ids(corpus.ids().begin() + split, corpus.ids().end());
  data::StreamBatches stream(train_ids, batch, steps);
  // Under mpirun every rank reads its own streams (the Trainer cuts them too); cut now, so the
  // chunk count below is the one training sees.
  stream.set_shard(dist::rank(), dist::world_size());
  // Held-out text in fewer, longer streams, so a short tail still gives whole chunks.
  const std::int64_t eval_batch = std::clamp<std::int64_t>(static_cast<std::int64_t>(held_ids.size()) / (4 * steps), 1,
                                                           batch);

  manual_seed(seed);
  Model m = make_model(corpus.vocab_size(), embed, hidden, layers, static_cast<float>(dropout));
  m.net.to(device);
  std::int64_t params = 0;
  for (Parameter* p : m.net.parameters()) params += p->value.numel();
  std::printf("char_rnn on %s (%s): %s, %lld characters (%lld train, %lld held out), vocabulary %lld\n"
              "model: %s, %lld parameters; %lld chunks of %lld x %lld per epoch\n",
              device.str().c_str(), device.name().c_str(), corpus.origin().c_str(),
              static_cast<long long>(corpus.size()), static_cast<long long>(train_ids.size()),
              static_cast<long long>(held_ids.size()), static_cast<long long>(corpus.vocab_size()),
              describe_model(m).c_str(), static_cast<long long>(params), static_cast<long long>(stream.chunks()),
              static_cast<long long>(steps), static_cast<long long>(batch));

  Adam opt(m.net.parameters(), {.lr = lr});
  data::StreamBatches held_out(held_ids, eval_batch, steps);
  CrossEntropyLoss loss;
  TrainerOptions o;
  o.precision = precision;
  o.epochs = epochs;
  o.log_every = 50;
  o.metrics = args.str("metrics");
  o.tensorboard = args.str("tensorboard");
  o.ema = examples::ema_decay(args);
  o.checkpoint = args.str("checkpoint");
  o.schedule = std::make_shared<CosineLR>(lr, epochs * stream.chunks());
  o.clip_grad_norm = static_cast<float>(clip);
  o.max_seconds = minutes * 60.0;
  // The vocabulary says what the ids mean; a checkpoint of other text is refused.
  o.checkpoint_extra = [&corpus] { return std::vector<NamedTensor>{{"vocabulary", corpus.vocabulary_tensor()}}; };
  o.restore_extra = [&corpus](const std::string& file, const std::vector<NamedTensor>& extra) {
    for (const auto& [name, t] : extra) {
      if (name == "vocabulary") return corpus.check_vocabulary(t, file);
    }
    throw ValueError(file + ": no vocabulary entry; not a char_rnn checkpoint");
  };
  // Truncated BPTT: each epoch (and each evaluation) starts the streams from a zero state, every
  // chunk from the state the previous one ended in, and checkpoints keep that state.
  use_truncated_bptt(o, *m.lstm);
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  o.on_epoch_end = [&](const EpochResult& epoch, json::Value& record) {
    const double held = epoch.test.loss;
    if (!std::isfinite(held)) {
      throw Error("training diverged in epoch " + std::to_string(epoch.epoch) +
                  " (held-out loss not finite); the last checkpoint was left as it was");
    }
    std::printf("  held-out loss %.4f nats/char (%.3f bits/char) after %.1f s\n", held, held / std::log(2.0),
                elapsed());
    std::fflush(stdout);
    record.set("held_out_nats_per_char", held);
  };
  // Checkpoints describe the model (layers/architecture.h); the vocabulary travels as a tensor.
  o.checkpoint_metadata = model_metadata(m.net, ModelInfo{});
  Trainer trainer(m.net, opt, loss, o);
  if (!args.str("resume").empty()) {
    // Loaded here rather than through TrainerOptions::resume, so the message can say where
    // the run continues; fit() then continues from it (and appends to the metrics file).
    trainer.load_checkpoint(args.str("resume"), &stream);
    std::printf("resumed from %s after step %lld: epoch %lld, chunk %lld next\n", args.str("resume").c_str(),
                static_cast<long long>(trainer.global_step()), static_cast<long long>(trainer.epoch() + 1),
                static_cast<long long>(trainer.global_step() - trainer.epoch() * stream.chunks() + 1));
  }
  const std::int64_t first_step = trainer.global_step();
  const FitResult fit = trainer.fit(stream, &held_out);
  // The averaged weights were evaluated: they sample the text.
  if (WeightAverage* average = trainer.weight_average()) average->copy_to_model();
  if (fit.out_of_time) {
    std::printf("time limit of %.1f minutes reached in epoch %lld\n", o.max_seconds / 60.0,
                static_cast<long long>((fit.steps - 1) / stream.chunks() + 1));
  }
  const double held_loss = fit.final_test.loss;
  const std::int64_t tokens = (fit.steps - first_step) * batch * steps;
  const double seconds = elapsed();
  std::printf(
      "held-out loss %.4f nats/char (%.3f bits/char), %lld characters trained in %.1f s on %s in %s (%.0f chars/s)\n",
      held_loss, held_loss / std::log(2.0), static_cast<long long>(tokens), seconds, device.str().c_str(),
      precision_name(precision), static_cast<double>(tokens) / seconds);
  trainer.write_metrics(json::Object{{"event", "final"},
                                     {"test_loss", held_loss},
                                     {"held_out_bits_per_char", held_loss / std::log(2.0)},
                                     {"seconds", seconds},
                                     {"characters", tokens},
                                     {"device", device.str()},
                                     {"precision", precision_name(precision)}});
  // Ids (steps, streams), time-major as the LSTM takes them; zero initial states.
  examples::export_onnx_if_asked(args, m.net, {-1, -1}, DType::kI64);
  if (sample_chars > 0) {
    std::printf("--- sample (temperature %.2f) ---\n%s\n", temperature,
                sample(m, corpus, corpus.decode({corpus.ids()[0]}), sample_chars, temperature, seed)
                    .c_str());
  }
  return 0;
} catch (const std::exception& e) {
  return examples::fail("char_rnn", e);
}

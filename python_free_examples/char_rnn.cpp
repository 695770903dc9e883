// char_rnn: a character-level LSTM language model (embedding, LSTM, linear read-out) trained
// by truncated backpropagation through time, evaluated on a held-out tail, then sampled.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "example_args.h"
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

// Mean cross-entropy in nats per character over every chunk of `ids` read as `batch` streams.
double evaluate(Model& m, const std::vector<std::int32_t>& ids, std::int64_t batch, std::int64_t steps,
                Device device) {
  const data::StreamBatches stream(ids, batch, steps);
  m.net.eval();
  m.lstm->reset_state();
  CrossEntropyLoss loss;
  Tensor inputs, targets;
  const Tensor total = Tensor::zeros({1}, DType::kF32, device);  // summed on the device: one read
  for (std::int64_t k = 0; k < stream.chunks(); ++k) {
    stream.chunk(k, inputs, targets);
    const Tensor logits = m.net.forward(inputs);
    ops::axpy(total, 1.0f, loss.forward(logits, targets.to(device)));
    m.lstm->carry_state();
  }
  m.lstm->reset_state();
  m.net.train();
  return total.to_vector<float>()[0] / static_cast<double>(stream.chunks());
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
      .option("epochs", "10", "passes over the training text (--minutes may stop it sooner)")
      .option("minutes", "0", "stop training after this many minutes (0: no limit)")
      .option("batch", "32", "parallel streams per step")
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
      .option("checkpoint", "", "safetensors checkpoint written after each epoch (atomically)")
      .option("resume", "", "checkpoint to continue from (its vocabulary must match the text)");
  args.parse(argc, argv);

  const Device device = Device::parse(args.str("device"));
  const std::uint64_t seed = static_cast<std::uint64_t>(args.integer("seed"));
  std::string path = args.str("data").empty() ? default_text_path() : args.str("data");
  const data::CharCorpus corpus =
      path.empty() ? data::CharCorpus::from_text(kBuiltinText, "the built-in text") : data::CharCorpus::from_file(path);
  const double holdout = args.number("holdout");
  if (!(holdout > 0.0 && holdout < 1.0)) throw std::invalid_argument("--holdout must be in (0, 1)");
  // Checked now, not when sampling starts after the whole training run.
  if (!(args.number("temperature") > 0.0)) throw std::invalid_argument("--temperature must be > 0");
  const std::int64_t split = static_cast<std::int64_t>(static_cast<double>(corpus.size()) * (1.0 - holdout));
  const std::vector<std::int32_t> train_ids(corpus.ids().begin(), corpus.ids().begin() + split);
  const std::vector<std::int32_t> held_ids(corpus.ids().begin() + split, corpus.ids().end());
  const std::int64_t batch = args.integer("batch", 1), steps = args.integer("steps", 1);
  const data::StreamBatches stream(train_ids, batch, steps);
  // Held-out text in fewer, longer streams, so a short tail still gives whole chunks.
  const std::int64_t eval_batch = std::clamp<std::int64_t>(static_cast<std::int64_t>(held_ids.size()) / (4 * steps), 1,
                                                           batch);

  manual_seed(seed);
  Model m = make_model(corpus.vocab_size(), args.integer("embed", 1), args.integer("hidden", 1),
                       args.integer("layers", 1), static_cast<float>(args.number("dropout")));
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

  Adam opt(m.net.parameters(), {.lr = args.number("lr")});
  const int epochs = static_cast<int>(args.integer("epochs", 1));
  const std::int64_t total_steps = epochs * stream.chunks();
  CosineLR schedule(args.number("lr"), total_steps);
  int first_epoch = 0;
  if (!args.str("resume").empty()) {
    const SafetensorsContents saved = load_safetensors(args.str("resume"));
    std::vector<NamedTensor> model_state, optim_state;
    bool have_vocab = false;
    for (const auto& [name, t] : saved.tensors) {
      if (name == "vocabulary") {
        corpus.check_vocabulary(t, args.str("resume"));
        have_vocab = true;
      } else if (name.rfind("model.", 0) == 0) {
        model_state.emplace_back(name.substr(6), t);
      } else if (name.rfind("optim.", 0) == 0) {
        optim_state.emplace_back(name.substr(6), t);
      }
    }
    if (!have_vocab) throw ValueError(args.str("resume") + ": no vocabulary entry; not a char_rnn checkpoint");
    try {
      m.net.load_state(model_state);
      opt.load_state(optim_state);
    } catch (const Error& e) {
      throw ValueError(args.str("resume") + ": not a checkpoint of this model: " + e.what());
    }
    first_epoch = static_cast<int>(opt.steps() / stream.chunks());
    std::printf("resumed from %s at epoch %d\n", args.str("resume").c_str(), first_epoch);
  }

  examples::MetricsFile metrics(args.str("metrics"));

  const double limit_s = args.number("minutes") * 60.0;
  const float clip = static_cast<float>(args.number("clip"));
  CrossEntropyLoss loss;
  Tensor inputs, targets;
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  double held_loss = std::nan("");
  bool stopped = false;
  std::int64_t tokens = 0;
  for (int epoch = first_epoch; epoch < epochs && !stopped; ++epoch) {
    m.lstm->reset_state();
    // The losses are summed on the device and read every 50 chunks, not synchronised per step.
    const Tensor running = Tensor::zeros({1}, DType::kF32, device);
    std::int64_t counted = 0;
    for (std::int64_t k = 0; k < stream.chunks(); ++k) {
      stream.chunk(k, inputs, targets);
      opt.set_lr(schedule.lr_at(opt.steps()));
      m.net.zero_grad();
      const Tensor logits = m.net.forward(inputs);
      ops::axpy(running, 1.0f, loss.forward(logits, targets.to(device)));
      m.net.backward(loss.backward());
      if (clip > 0.0f) clip_grad_norm(m.net.parameters(), clip);
      opt.step();
      m.lstm->carry_state();
      ++counted;
      tokens += batch * steps;
      if ((k + 1) % 50 == 0 || k + 1 == stream.chunks()) {
        const double mean = running.to_vector<float>()[0] / static_cast<double>(counted);
        if (!std::isfinite(mean)) {  // checkpoints are written only after this check, at epoch ends
          throw Error("training diverged in epoch " + std::to_string(epoch + 1) + ", chunks " +
                      std::to_string(k + 2 - counted) + "-" + std::to_string(k + 1) + " (mean loss " +
                      std::to_string(mean) + "); the last checkpoint was left as it was");
        }
        std::printf("epoch %d/%d chunk %lld/%lld loss %.4f (%.3f bits/char) %.0f chars/s\n", epoch + 1, epochs,
                    static_cast<long long>(k + 1), static_cast<long long>(stream.chunks()), mean,
                    mean / std::log(2.0), static_cast<double>(tokens) / elapsed());
        std::fflush(stdout);
        ops::fill(running, 0.0);
        counted = 0;
      }
      if (limit_s > 0.0 && elapsed() >= limit_s) {
        std::printf("time limit of %.1f minutes reached in epoch %d\n", limit_s / 60.0, epoch + 1);
        stopped = true;
        break;
      }
    }
    held_loss = evaluate(m, held_ids, eval_batch, steps, device);
    if (!std::isfinite(held_loss)) {  // also covers chunks after the last 50-chunk check
      throw Error("training diverged in epoch " + std::to_string(epoch + 1) +
                  " (held-out loss not finite); the last checkpoint was left as it was");
    }
    std::printf("  held-out loss %.4f nats/char (%.3f bits/char) after %.1f s\n", held_loss,
                held_loss / std::log(2.0), elapsed());
    std::fflush(stdout);
    metrics.write({{"event", "epoch"},
            {"epoch", epoch + 1},
            {"held_out_nats_per_char", held_loss},
            {"seconds", elapsed()}});
    if (!args.str("checkpoint").empty()) {
      std::vector<NamedTensor> state{{"vocabulary", corpus.vocabulary_tensor()}};
      for (auto& [name, t] : m.net.state()) state.emplace_back("model." + name, t);
      for (auto& [name, t] : opt.state()) state.emplace_back("optim." + name, t);
      save_safetensors(args.str("checkpoint"), state);
    }
  }
  const double seconds = elapsed();
  std::printf("held-out loss %.4f nats/char (%.3f bits/char), %lld characters trained in %.1f s on %s (%.0f chars/s)\n",
              held_loss, held_loss / std::log(2.0), static_cast<long long>(tokens), seconds, device.str().c_str(),
              static_cast<double>(tokens) / seconds);
  metrics.write({{"event", "final"},
          {"test_loss", held_loss},
          {"held_out_bits_per_char", held_loss / std::log(2.0)},
          {"seconds", seconds},
          {"characters", tokens},
          {"device", device.str()}});
  if (args.integer("sample") > 0) {
    std::printf("--- sample (temperature %.2f) ---\n%s\n", args.number("temperature"),
                sample(m, corpus, corpus.decode({corpus.ids()[0]}), args.integer("sample"),
                       args.number("temperature"), seed)
                    .c_str());
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "char_rnn: error: %s\n", e.what());
  return 1;
}

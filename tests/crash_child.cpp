// The training run that tests/crash_test.cpp kills with SIGKILL: a small MLP with batch norm
// and dropout under the Trainer, checkpointing every step, resuming from the checkpoint when
// one exists. Deterministic: the same arguments give the same final checkpoint.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "gpudl/core/runtime/ops.h"
#include "gpudl/core/training/optim.h"
#include "gpudl/core/runtime/rng.h"
#include "gpudl/core/training/schedule.h"
#include "gpudl/core/training/trainer.h"
#include "gpudl/layers/activation.h"
#include "gpudl/layers/batchnorm.h"
#include "gpudl/layers/dropout.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/losses.h"
#include "gpudl/layers/sequential.h"

int main(int argc, char** argv) {
  using namespace gpudl;
  if (argc != 3) {
    std::fprintf(stderr, "usage: gpudl_crash_child CHECKPOINT STEPS\n");
    return 2;
  }
  try {
    const std::string checkpoint = argv[1];
    const std::int64_t steps = std::stoll(argv[2]);
    // Three noisy classes in 8 dimensions, the same in every run.
    Generator data(3);
    Tensor x = Tensor::empty({256, 8});
    ops::uniform_(x, -1.0f, 1.0f, data);
    std::vector<std::int64_t> labels(256);
    float* px = x.data<float>();
    for (std::size_t i = 0; i < labels.size(); ++i) {
      labels[i] = static_cast<std::int64_t>(i % 3);
      px[i * 8 + static_cast<std::size_t>(labels[i])] += 1.5f;
    }
    const data::TensorDataset train(x, Tensor::from_vector(labels, {256}));

    manual_seed(5);
    Sequential net{Linear(8, 32), BatchNorm1d(32), ReLU(), Dropout(0.2f), Linear(32, 3)};
    Adam opt(net.parameters());
    CrossEntropyLoss loss;
    TrainerOptions o;
    o.batch = 16;  // 16 steps an epoch
    o.epochs = static_cast<int>((steps + 15) / 16);
    o.stop_after_steps = steps;
    o.seed = 7;
    o.log_every = 4;
    o.progress = false;
    o.checkpoint = checkpoint;
    o.checkpoint_every = 1;
    o.schedule = std::make_shared<CosineLR>(0.01, steps);
    if (std::filesystem::exists(checkpoint)) o.resume = checkpoint;
    Trainer t(net, opt, loss, o);
    t.fit(train);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpudl_crash_child: %s\n", e.what());
    return 1;
  }
}

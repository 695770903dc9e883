// Training helpers shared by the example drivers: MNIST loading and the closing report.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <utility>

#include "example_args.h"
#include "gpudl/gpudl.h"

namespace examples {

// Train and test MNIST from --data (or the default folders), --limit applied to the training
// set, both normalised with the usual MNIST statistics (mean 0.1307, sd 0.3081 of the [0, 1]
// pixels). Throws IoError naming the file at fault.
inline std::pair<gpudl::data::TensorDataset, gpudl::data::TensorDataset> load_mnist(const Args& args) {
  using namespace gpudl;
  const std::string dir = data_dir(args, "mnist");
  data::TensorDataset train = data::mnist(dir, data::Split::kTrain);
  data::TensorDataset test = data::mnist(dir, data::Split::kTest);
  if (args.integer("limit") > 0) train = train.take(std::min(args.integer("limit"), train.size()));
  train.normalize(0.1307f, 0.3081f);
  test.normalize(0.1307f, 0.3081f);
  return {std::move(train), std::move(test)};
}

// Fits, prints the test result, and writes the final metrics record (test accuracy and loss,
// seconds, steps, device, plus `extra`).
inline gpudl::FitResult fit_and_report(gpudl::Trainer& trainer, const gpudl::data::TensorDataset& train,
                                       const gpudl::data::TensorDataset& test, gpudl::Device device,
                                       gpudl::json::Object extra = {}) {
  const auto start = std::chrono::steady_clock::now();
  const gpudl::FitResult r = trainer.fit(train, &test);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("test accuracy %.2f%%, test loss %.4f, %lld steps in %.1f s on %s\n", 100.0 * r.final_test.accuracy,
              r.final_test.loss, static_cast<long long>(r.steps), seconds, device.str().c_str());
  gpudl::json::Object record{{"event", "final"},
                             {"test_accuracy", r.final_test.accuracy},
                             {"test_loss", r.final_test.loss},
                             {"seconds", seconds},
                             {"steps", r.steps},
                             {"device", device.str()}};
  for (auto& member : extra) record.push_back(std::move(member));
  trainer.write_metrics(record);
  return r;
}

}  // namespace examples

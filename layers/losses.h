// Training criteria: MSE, binary cross-entropy on logits, cross-entropy on logits (fused
// log-softmax + NLL with label smoothing), and the margin (perceptron / hinge) criterion.
#pragma once

#include "gpudl/core/training/loss.h"
#include "gpudl/core/nn/loss.h"

namespace gpudl {

// Shared by the element-wise losses: the mean over every element of output.
class ElementwiseLoss : public Loss {
 public:
  Tensor forward(const Tensor& output, const Tensor& target) override;
  Tensor backward() override;
  Tensor correct() const override { return counts_ ? correct_ : Tensor(); }
  std::string describe() const override { return name_; }

 protected:
  ElementwiseLoss(nn::ElementLossKind kind, float margin, bool counts, std::string name);

 private:
  nn::ElementLossKind kind_;
  float margin_;
  bool counts_;
  std::string name_;
  Tensor grad_, correct_;
};

// mean((output - target)²).
class MSELoss : public ElementwiseLoss {
 public:
  MSELoss() : ElementwiseLoss(nn::ElementLossKind::kMse, 0.0f, false, "MSELoss") {}
};

// Binary cross-entropy on logits with targets in [0, 1], computed stably.
class BCEWithLogitsLoss : public ElementwiseLoss {
 public:
  BCEWithLogitsLoss() : ElementwiseLoss(nn::ElementLossKind::kBceLogits, 0.0f, true, "BCEWithLogitsLoss") {}
};

// mean(max(0, margin - t·score)) for targets t in {-1, +1}: margin 0 is Rosenblatt's
// perceptron criterion, margin 1 the hinge loss.
class MarginLoss : public ElementwiseLoss {
 public:
  explicit MarginLoss(float margin = 1.0f);
};

struct CrossEntropyOptions {
  float label_smoothing = 0.0f;  // in [0, 1)
};

// Cross-entropy of logits (N, C) against class indices (N) i64, or of (..., C) against (...)
// (a sequence model's logits at every time step), averaged over all rows: one fused kernel
// computes log-softmax, the loss, its gradient and the number of correct predictions.
class CrossEntropyLoss : public Loss {
 public:
  // Throws ValueError for label_smoothing outside [0, 1).
  explicit CrossEntropyLoss(CrossEntropyOptions options = {});
  Tensor forward(const Tensor& output, const Tensor& target) override;
  Tensor backward() override;
  Tensor correct() const override { return correct_; }
  std::string describe() const override;

 private:
  CrossEntropyOptions options_;
  Tensor grad_, correct_;
};

}  // namespace gpudl

// DataParallel: gradient buckets filled by the backward hook and all-reduced as they fill, and
// ZeRO-1's reduce-scatter / all-gather of flat gradient and parameter shares.
#include "gpudl/core/dist/data_parallel.h"

#include <cmath>
#include <string>

#include "gpudl/core/detail/clock.h"
#include "gpudl/core/runtime/format.h"
#include "gpudl/core/runtime/ops.h"

namespace gpudl::dist {

namespace {

Tensor flat_view(const Tensor& flat, std::int64_t offset, std::int64_t numel) {
  return flat.slice(offset, offset + numel);
}

}  // namespace

DataParallel::DataParallel(Module& model, ProcessGroup& group, DataParallelOptions options)
    : model_(model), group_(group), options_(options), params_(model.parameters()) {
  if (options_.bucket_bytes == 0) throw ValueError("DataParallel: bucket_bytes must be > 0");
  if (model.device() != group.device()) {
    throw DeviceError("DataParallel: the model is on " + model.device().str() + " but the process group is on " +
                      group.device().str());
  }
  for (std::size_t i = 0; i < params_.size(); ++i) {
    if (!index_.emplace(params_[i], i).second) {
      throw ValueError("DataParallel: parameter '" + params_[i]->name + "' appears twice in the model");
    }
  }
  // Every rank starts from rank 0's model: its initialisation, or the checkpoint it resumed.
  for (Parameter* p : params_) group_.broadcast(p->value, 0);
  broadcast_buffers();

  // Backward produces gradients roughly from the last layer to the first, so buckets are cut
  // in that order and the first one fills first.
  bucket_of_.assign(params_.size(), 0);
  ready_.assign(params_.size(), false);
  const std::int64_t cap = static_cast<std::int64_t>(options_.bucket_bytes / sizeof(float));
  for (std::size_t k = params_.size(); k-- > 0;) {
    const std::int64_t n = params_[k]->value.numel();
    if (buckets_.empty() || (buckets_.back().numel > 0 && buckets_.back().numel + n > cap)) buckets_.emplace_back();
    Bucket& b = buckets_.back();
    b.params.push_back(k);
    b.offsets.push_back(b.numel);
    b.numel += n;
    bucket_of_[k] = buckets_.size() - 1;
  }
  for (Bucket& b : buckets_) b.flat = Tensor::empty({std::max<std::int64_t>(b.numel, 1)}, DType::kF32, model.device());
  reset_step();
  model_.set_backward_hook([this](Module& m) { on_backward(m); });
}

DataParallel::~DataParallel() { model_.set_backward_hook(nullptr); }

void DataParallel::broadcast_buffers() {
  for (auto& [name, t] : model_.buffers()) {
    (void)name;
    if (t->defined() && t->numel() > 0) group_.broadcast(*t, 0);
  }
}

void DataParallel::prepare(double weight) {
  if (!std::isfinite(weight) || weight < 0.0) {
    throw ValueError("DataParallel::prepare: weight must be finite and >= 0, got " + format_number(weight));
  }
  weight_ = weight;
  prepared_ = true;
  reset_step();
}

void DataParallel::reset_step() {
  std::fill(ready_.begin(), ready_.end(), false);
  for (Bucket& b : buckets_) {
    b.waiting = b.params.size();
    // A bucket started by a step that threw before synchronize(): its collective may still read
    // the buffer the next step packs into, so the next step waits for it (its failure, if any,
    // is the job's already).
    if (b.work) {
      try {
        b.work->wait();
      } catch (const std::exception&) {
      }
      b.work.reset();
    }
  }
  next_bucket_ = 0;
}

void DataParallel::on_backward(Module& m) {
  if (!prepared_ || !options_.overlap || options_.zero1) return;
  for (Parameter* p : m.parameters()) {
    const auto it = index_.find(p);
    if (it == index_.end() || ready_[it->second]) continue;
    ready_[it->second] = true;
    --buckets_[bucket_of_[it->second]].waiting;
  }
  launch_ready();
}

// In bucket order only: every rank must issue the collectives in the same order, and a
// bucket that happens to fill early on one rank must not overtake another.
void DataParallel::launch_ready() {
  while (next_bucket_ < buckets_.size() && buckets_[next_bucket_].waiting == 0) launch(buckets_[next_bucket_++]);
}

void DataParallel::launch(Bucket& b) {
  for (std::size_t j = 0; j < b.params.size(); ++j) {
    const Parameter& p = *params_[b.params[j]];
    ops::copy(flat_view(b.flat, b.offsets[j], p.grad.numel()), p.grad.reshape({-1}));
  }
  if (weight_ != 1.0) ops::scale(b.flat, b.flat, static_cast<float>(weight_));
  b.work = group_.all_reduce_async(b.flat, ReduceOp::kSum);
}

void DataParallel::synchronize() {
  if (!prepared_) prepare(1.0 / group_.size());
  const double start = gpudl::detail::seconds_now();
  if (options_.zero1) {
    // Each rank's flat gradient holds every share at its owner's segment; the reduce-scatter
    // leaves each rank the sum of its own segment.
    if (!zero_grads_.defined()) throw ValueError("DataParallel: zero1 needs shard(optimizer) before training");
    ops::fill(zero_grads_, 0.0);
    for (std::size_t i = 0; i < params_.size(); ++i) {
      ops::copy(flat_view(zero_grads_, zero_offset_[i], params_[i]->grad.numel()), params_[i]->grad.reshape({-1}));
    }
    if (weight_ != 1.0) ops::scale(zero_grads_, zero_grads_, static_cast<float>(weight_));
    group_.reduce_scatter(zero_own_, zero_grads_, ReduceOp::kSum);
    const std::int64_t base = group_.rank() * segment_;
    for (std::size_t i = 0; i < params_.size(); ++i) {
      if (owner_[i] != group_.rank()) continue;
      ops::copy(params_[i]->grad.reshape({-1}), flat_view(zero_own_, zero_offset_[i] - base, params_[i]->grad.numel()));
    }
  } else {
    // Buckets the hook did not start (parameters backward never reached, or no overlap).
    for (std::size_t i = next_bucket_; i < buckets_.size(); ++i) buckets_[i].waiting = 0;
    launch_ready();
    for (Bucket& b : buckets_) {
      b.work->wait();
      for (std::size_t j = 0; j < b.params.size(); ++j) {
        Parameter& p = *params_[b.params[j]];
        ops::copy(p.grad.reshape({-1}), flat_view(b.flat, b.offsets[j], p.grad.numel()));
      }
    }
  }
  last_wait_ = gpudl::detail::seconds_now() - start;
  prepared_ = false;
  reset_step();
}

int DataParallel::owner(std::size_t index) const {
  if (index >= params_.size()) throw ValueError("DataParallel::owner: no parameter " + std::to_string(index));
  return owner_.empty() ? 0 : owner_[index];
}

void DataParallel::shard(Optimizer& optimizer) {
  if (!options_.zero1) throw ValueError("DataParallel::shard: the options do not ask for zero1");
  if (optimizer.params() != params_) {
    throw ValueError("DataParallel::shard: the optimizer's parameters are not the model's, in the model's order");
  }
  // Contiguous shares of about total / size elements each, in parameter order.
  std::int64_t total = 0;
  for (const Parameter* p : params_) total += p->value.numel();
  const int size = group_.size();
  owner_.assign(params_.size(), 0);
  std::vector<std::int64_t> share(static_cast<std::size_t>(size), 0);
  std::int64_t before = 0;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const std::int64_t n = params_[i]->value.numel();
    // The share whose interval holds this parameter's middle element.
    const std::int64_t middle = before + n / 2;
    int r = static_cast<int>(middle * size / std::max<std::int64_t>(total, 1));
    r = std::clamp(r, i == 0 ? 0 : owner_[i - 1], size - 1);
    owner_[i] = r;
    share[static_cast<std::size_t>(r)] += n;
    before += n;
  }
  segment_ = std::max<std::int64_t>(*std::max_element(share.begin(), share.end()), 1);
  // Each parameter's place in the flat exchange: its owner's segment, after the owner's earlier ones.
  zero_offset_.assign(params_.size(), 0);
  std::vector<std::int64_t> used(static_cast<std::size_t>(size), 0);
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const std::size_t r = static_cast<std::size_t>(owner_[i]);
    zero_offset_[i] = static_cast<std::int64_t>(r) * segment_ + used[r];
    used[r] += params_[i]->value.numel();
  }
  zero_grads_ = Tensor::zeros({segment_ * size}, DType::kF32, model_.device());
  zero_own_ = Tensor::zeros({segment_}, DType::kF32, model_.device());
  std::vector<bool> mine(params_.size());
  for (std::size_t i = 0; i < params_.size(); ++i) mine[i] = owner_[i] == group_.rank();
  optimizer.set_owned(std::move(mine));
  optimizer.release_unowned_state();
}

void DataParallel::after_step() {
  if (!options_.zero1) return;
  // Own share in, everyone's share out: zero_grads_ serves as the gathered buffer, laid out as
  // the gradients were.
  const std::int64_t base = group_.rank() * segment_;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    if (owner_[i] != group_.rank()) continue;
    const Tensor& v = params_[i]->value;
    ops::copy(flat_view(zero_own_, zero_offset_[i] - base, v.numel()), v.reshape({-1}));
  }
  group_.all_gather(zero_grads_, zero_own_);
  for (std::size_t i = 0; i < params_.size(); ++i) {
    if (owner_[i] == group_.rank()) continue;
    const Tensor& v = params_[i]->value;
    ops::copy(v.reshape({-1}), flat_view(zero_grads_, zero_offset_[i], v.numel()));
  }
}

void DataParallel::gather_optimizer_state(Optimizer& optimizer) {
  if (!options_.zero1) return;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    for (Tensor* b : optimizer.state_buffers(i)) group_.broadcast(*b, owner_[i]);
  }
}

void DataParallel::release_optimizer_state(Optimizer& optimizer) {
  if (options_.zero1) optimizer.release_unowned_state();
}

}  // namespace gpudl::dist

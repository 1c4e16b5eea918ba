// AdamW with exact, file-friendly state.
#include "adamw.h"

#include <torch/torch.h>

#include <cmath>

#include "xcomp/error.h"

namespace xcomp {

AdamW::AdamW(std::map<std::string, torch::Tensor> params, AdamWOptions options)
    : params_(std::move(params)), o_(options) {
  for (const auto& [n, p] : params_) {
    exp_avg_[n] = torch::zeros_like(p, torch::TensorOptions().dtype(torch::kFloat32));
    exp_avg_sq_[n] = torch::zeros_like(p, torch::TensorOptions().dtype(torch::kFloat32));
    if (p.scalar_type() != torch::kFloat32) master_[n] = p.detach().to(torch::kFloat32).clone();
  }
}

double AdamW::clip_grad_norm(double max_norm) {
  std::vector<torch::Tensor> grads;
  for (const auto& [n, p] : params_)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return 0;
  torch::NoGradGuard ng;
  auto total = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat32).device(grads[0].device()));
  for (const auto& g : grads) total += g.to(torch::kFloat32).pow(2).sum();
  const double norm = std::sqrt(total.item<double>());
  if (max_norm > 0 && norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);
    for (auto& g : grads) g.mul_(scale);
  }
  return norm;
}

void AdamW::step(int64_t step, double lr, const std::map<std::string, double>& lr_scale) {
  torch::NoGradGuard ng;
  const double bc1 = 1 - std::pow(o_.beta1, static_cast<double>(step));
  const double bc2 = 1 - std::pow(o_.beta2, static_cast<double>(step));
  for (auto& [n, p] : params_) {
    if (!p.grad().defined()) continue;
    auto it = lr_scale.find(n);
    const double plr = lr * (it == lr_scale.end() ? 1.0 : it->second);
    auto g = p.grad().to(torch::kFloat32);
    auto& m = exp_avg_[n];
    auto& v = exp_avg_sq_[n];
    m.mul_(o_.beta1).add_(g, 1 - o_.beta1);
    v.mul_(o_.beta2).addcmul_(g, g, 1 - o_.beta2);
    auto update = m / bc1 / ((v / bc2).sqrt_().add_(o_.eps));
    auto master = master_.find(n);
    torch::Tensor& w = master == master_.end() ? p : master->second;
    if (o_.weight_decay > 0) w.mul_(1 - plr * o_.weight_decay);
    w.add_(update, -plr);
    if (master != master_.end()) p.copy_(w);
    p.grad().zero_();
  }
}

std::map<std::string, torch::Tensor> AdamW::state() const {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [n, t] : exp_avg_) out["exp_avg." + n] = t;
  for (const auto& [n, t] : exp_avg_sq_) out["exp_avg_sq." + n] = t;
  for (const auto& [n, t] : master_) out["master." + n] = t;
  return out;
}

void AdamW::load_state(const std::map<std::string, torch::Tensor>& state, const std::string& where) {
  torch::NoGradGuard ng;
  for (auto* moments : {&exp_avg_, &exp_avg_sq_, &master_}) {
    const std::string prefix = moments == &exp_avg_ ? "exp_avg." : moments == &exp_avg_sq_ ? "exp_avg_sq." : "master.";
    for (auto& [n, t] : *moments) {
      auto it = state.find(prefix + n);
      if (it == state.end()) throw Error(where, "lacks optimizer tensor '" + prefix + n + "'");
      if (it->second.sizes() != t.sizes()) throw Error(where, "optimizer tensor '" + prefix + n + "' has the wrong shape");
      t.copy_(it->second);
    }
  }
}

}  // namespace xcomp

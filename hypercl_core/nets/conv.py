"""Convolutional targets for split CIFAR-10/100: the CIFAR ResNet and the Zenke et al. net.

Like `TargetMLP`, both are pure functions of one flat weight vector, so a
hypernetwork can generate every kernel, bias and batch-norm scale/shift. A
batch of B weight sets (one per task, for HNET+ENT's pass over every learned
task) runs on a GPU as one network with grouped convolutions (on the CPU one set
at a time, which measured faster there): the B sets' channels are
stacked (N, B*C, H, W) and each conv uses groups=B, so B networks cost one
kernel launch per layer instead of a Python loop. The first conv reads the
shared input directly with all B*C_out kernels (no copy of the input), and the
fully-connected layers use one batched matmul. A single weight set is the
same code with B = 1.

Batch norm keeps running statistics per task (METHODS.md section 5; the paper's
Appendix C checkpoints them after every task): a (num_tasks, C) mean and
variance per layer. Training on task t normalizes with the batch statistics and
moves only row t; evaluation normalizes with row t, or with each set's own row
for a batch of weight sets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hypercl_core.nets.target import ParamSpec, TargetNetwork, select_head

BN_MOMENTUM = 0.1  # torch's BatchNorm2d defaults, so the statistics follow the usual convention
BN_EPS = 1e-5


def _conv_specs(name: str, c_in: int, c_out: int, size: int = 3) -> list[ParamSpec]:
    return [ParamSpec(f"{name}.weight", (c_out, c_in, size, size), "weight"),
            ParamSpec(f"{name}.bias", (c_out,), "bias")]


def _bn_specs(name: str, channels: int) -> list[ParamSpec]:
    return [ParamSpec(f"{name}.scale", (channels,), "bn_scale"),
            ParamSpec(f"{name}.shift", (channels,), "bn_shift")]


def _linear_specs(name: str, fan_in: int, fan_out: int, heads: int = 1, output: bool = False) -> list[ParamSpec]:
    return [ParamSpec(f"{name}.weight", (fan_out, fan_in), "weight", heads, output),
            ParamSpec(f"{name}.bias", (fan_out,), "bias", heads, output)]


def _weight_sets(flat: torch.Tensor, train: bool) -> tuple[torch.Tensor, bool]:
    """(B, num_weights) and whether the caller passed one set (num_weights,)."""
    if flat.dim() == 1:
        return flat.unsqueeze(0), True
    if flat.dim() != 2:
        raise ValueError(f"flat weights must be (num_weights,) or (B, num_weights), got {tuple(flat.shape)}")
    if train:
        raise ValueError("train=True needs one weight set: a batch of weight sets (B, num_weights) is for "
                         "evaluation only (batch statistics of B networks would update B tasks at once)")
    return flat, False


def _conv(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, sets: int, shared_input: bool,
          stride: int = 1, padding: int = 1) -> torch.Tensor:
    """Conv of B weight sets w (B, C_out, C_in, k, k) on h (N, B*C_in, H, W), or on the shared
    input h (N, C_in, H, W) with `shared_input` (every set reads the same channels, so one
    ungrouped conv with all B*C_out kernels does it)."""
    weight = w.reshape(sets * w.shape[1], *w.shape[2:])
    return F.conv2d(h, weight, b.reshape(-1), stride, padding, 1, 1 if shared_input else sets)


def _linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h (B, N, in) with one weight set per b: (B, N, out)."""
    return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))


def _stacked_features(h: torch.Tensor, sets: int) -> torch.Tensor:
    """(N, B*C, ...) channel-stacked maps -> (B, N, C*...) per-set features."""
    return h.reshape(h.shape[0], sets, -1).transpose(0, 1)


class _HeadsMixin:
    """The multi-head output layer shared by both nets (head-stacked weight and bias, last two specs)."""

    param_specs: list[ParamSpec]
    num_heads: int

    def _check_head(self, head: int | torch.Tensor | None, sets: int, single: bool) -> None:
        if isinstance(head, torch.Tensor):
            if single or head.shape != (sets,):
                raise ValueError(f"a head tensor needs weights (B, num_weights) with B = len(head); got head "
                                 f"{tuple(head.shape)} for {'one weight set' if single else f'{sets} sets'}")
        elif head is not None and not 0 <= head < self.num_heads:
            raise ValueError(f"head {head} out of range for {self.num_heads} heads")

    def _set_by_set(self, x: torch.Tensor, flat: torch.Tensor, head: int | torch.Tensor | None,
                    task: int | torch.Tensor | None) -> torch.Tensor | None:
        """A batch of weight sets on the CPU, one set at a time (None elsewhere: grouped convs).

        Measured on 2 CPU cores, 6 sets of ResNet-32 at 100 images: grouped 2.98 s, vmap 4.28 s,
        one set at a time 1.16 s (ZenkeNet 0.81 / 1.14 / 0.60 s): the CPU's conv kernels do not
        gain from groups, so the batch is only stacked where a GPU runs it as one launch."""
        if flat.dim() != 2 or flat.device.type != "cpu" or len(flat) == 1:
            return None
        pick = (lambda v, i: int(v[i]) if isinstance(v, torch.Tensor) else v)
        return torch.stack([self.forward(x, flat[i], pick(head, i), pick(task, i)) for i in range(len(flat))])

    def _heads(self, feats: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
               head: int | torch.Tensor | None) -> torch.Tensor:
        """feats (B, N, F) -> (B, N, k) for one head per set, or every head's (B, N, heads*k)."""
        if head is not None and self.num_heads > 1:
            w, b = select_head(w, self.param_specs[-2], head), select_head(b, self.param_specs[-1], head)
        return _linear(feats, w, b)


class ResNet(_HeadsMixin, TargetNetwork):
    """The CIFAR ResNet of He et al. (2016), depth 6n+2, with one linear head per task.

    Layout: conv3x3 (in -> 16) + BN + ReLU; three stages of n basic blocks (conv-BN-ReLU,
    conv-BN, add the shortcut, ReLU) at 16, 32 and 64 channels, the first block of stages 2
    and 3 striding by 2 with the parameter-free option-A shortcut (subsample by 2, zero-pad
    the new channels); global average pooling; heads 64 -> outputs_per_head. Convs have
    biases (a hypernetwork generates them anyway, and the paper's count includes them).

    ResNet(32, 10, 6 heads) has 468,540 weights including batch-norm scale and shift, the
    figure of the paper's Appendix C; ResNet(20, 10, 6 heads) has 273,660.
    """

    def __init__(self, depth: int, outputs_per_head: int, num_heads: int, num_tasks: int,
                 in_channels: int = 3, device: torch.device | str | None = None):
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}")
        self.depth, self.blocks_per_stage = depth, (depth - 2) // 6
        self.outputs_per_head, self.num_heads, self.num_tasks = outputs_per_head, num_heads, num_tasks
        self.input_shape = (in_channels, 32, 32)  # any spatial size works; CIFAR is 32x32
        self.param_specs = [*_conv_specs("conv0", in_channels, 16), *_bn_specs("bn0", 16)]
        self.norm_channels = {"bn0": 16}  # BN layer -> channels, in forward order
        # (name prefix, channels in, channels out, stride) per block, in forward order
        self.block_layout: list[tuple[str, int, int, int]] = []
        c_in = 16
        for s, c_out in enumerate((16, 32, 64)):
            for i in range(self.blocks_per_stage):
                stride = 2 if s > 0 and i == 0 else 1
                name = f"stages.{s}.blocks.{i}"
                self.block_layout.append((name, c_in, c_out, stride))
                self.param_specs += [*_conv_specs(f"{name}.conv1", c_in, c_out), *_bn_specs(f"{name}.bn1", c_out),
                                     *_conv_specs(f"{name}.conv2", c_out, c_out), *_bn_specs(f"{name}.bn2", c_out)]
                self.norm_channels[f"{name}.bn1"] = self.norm_channels[f"{name}.bn2"] = c_out
                c_in = c_out
        self.param_specs += _linear_specs("head", 64, outputs_per_head * num_heads, num_heads, True)
        self.running_mean = {n: torch.zeros(num_tasks, c, device=device) for n, c in self.norm_channels.items()}
        self.running_var = {n: torch.ones(num_tasks, c, device=device) for n, c in self.norm_channels.items()}

    def forward(self, x: torch.Tensor, flat: torch.Tensor, head: int | torch.Tensor | None = 0,
                task: int | torch.Tensor | None = None, train: bool = False) -> torch.Tensor:
        """x: images (N, C, H, W) shared by every weight set; flat: (num_weights,) -> (N, k), or
        (B, num_weights) with head a LongTensor (B,) -> (B, N, k). head=None: all heads
        concatenated (then pass `task`). train=True (one set only) normalizes with the batch
        statistics and updates task `task`'s running statistics."""
        if not train and (looped := self._set_by_set(x, flat, head, task)) is not None:
            return looped
        sets_flat, single = _weight_sets(flat, train)
        sets = sets_flat.shape[0]
        self._check_head(head, sets, single)
        self._follow(flat)
        tasks = self._tasks(head, task, sets, single)
        p = dict(zip((s.name for s in self.param_specs), self.unflatten(sets_flat)))

        def norm(h: torch.Tensor, name: str) -> torch.Tensor:
            return self._norm(h, name, p[f"{name}.scale"], p[f"{name}.shift"], tasks, train)

        h = F.relu(norm(_conv(x, p["conv0.weight"], p["conv0.bias"], sets, True), "bn0"))
        for name, c_in, c_out, stride in self.block_layout:
            out = _conv(h, p[f"{name}.conv1.weight"], p[f"{name}.conv1.bias"], sets, False, stride)
            out = F.relu(norm(out, f"{name}.bn1"))
            out = norm(_conv(out, p[f"{name}.conv2.weight"], p[f"{name}.conv2.bias"], sets, False), f"{name}.bn2")
            shortcut = h if stride == 1 and c_in == c_out else _option_a_shortcut(h, sets, c_out, stride)
            h = F.relu(out + shortcut)
        feats = _stacked_features(h.mean((2, 3)), sets)  # global average pooling: (B, N, 64)
        out = self._heads(feats, p["head.weight"], p["head.bias"], head)
        return out[0] if single else out

    def _follow(self, flat: torch.Tensor) -> None:
        """Keep the statistics where the weights are (a generated weight vector decides the device)."""
        first = next(iter(self.running_mean.values()))
        if first.device != flat.device or first.dtype != flat.dtype:
            self.running_mean = {n: t.to(flat.device, flat.dtype) for n, t in self.running_mean.items()}
            self.running_var = {n: t.to(flat.device, flat.dtype) for n, t in self.running_var.items()}

    def _tasks(self, head: int | torch.Tensor | None, task: int | torch.Tensor | None,
               sets: int, single: bool) -> int | torch.Tensor:
        """Whose statistics: an int for one weight set, a LongTensor (B,) for a batch. Defaults to
        the head (CL1/CL3: task t owns head t); a single-head target (CL2) passes task."""
        if task is None:
            if head is None:
                raise ValueError("head=None gives every head's outputs: pass task to pick the batch-norm statistics")
            task = head
        device = next(iter(self.running_mean.values())).device
        if isinstance(task, torch.Tensor) and (single or task.dim() == 0):
            if task.numel() != 1:
                raise ValueError(f"one weight set takes one task, got {tuple(task.shape)}")
            task = int(task)
        if isinstance(task, int):
            if not 0 <= task < self.num_tasks:
                raise ValueError(f"task {task} out of range for {self.num_tasks} tasks")
            return task if single else torch.full((sets,), task, dtype=torch.long, device=device)
        if task.shape != (sets,):
            raise ValueError(f"a batch of {sets} weight sets takes one task per set, got {tuple(task.shape)}")
        return task.to(device=device, dtype=torch.long)

    def _norm(self, h: torch.Tensor, name: str, scale: torch.Tensor, shift: torch.Tensor,
              tasks: int | torch.Tensor, train: bool) -> torch.Tensor:
        """Batch norm over the B*C stacked channels with each set's task statistics; in training
        (B = 1) F.batch_norm updates task row `tasks` of the running statistics in place."""
        mean, var = self.running_mean[name][tasks], self.running_var[name][tasks]
        return F.batch_norm(h, mean.reshape(-1), var.reshape(-1), scale.reshape(-1), shift.reshape(-1),
                            train, BN_MOMENTUM, BN_EPS)

    def norm_state(self) -> dict:
        """{"<bn layer>.running_mean" / ".running_var": (num_tasks, C)} as CPU copies, so the
        checkpoint loads with torch.load(weights_only=True) and later training leaves it alone."""
        state = {}
        for name in self.norm_channels:
            state[f"{name}.running_mean"] = self.running_mean[name].detach().to("cpu", torch.float32, copy=True)
            state[f"{name}.running_var"] = self.running_var[name].detach().to("cpu", torch.float32, copy=True)
        return state

    def load_norm_state(self, state: dict) -> None:
        """Restore norm_state()'s statistics onto the device (and dtype) the statistics live on."""
        expected = {f"{n}.{k}": (self.num_tasks, c) for n, c in self.norm_channels.items()
                    for k in ("running_mean", "running_var")}
        if set(state) != set(expected):
            raise ValueError(f"batch-norm state keys differ: missing {sorted(set(expected) - set(state))[:3]}, "
                             f"unexpected {sorted(set(state) - set(expected))[:3]}")
        for key, shape in expected.items():
            if tuple(state[key].shape) != shape:
                raise ValueError(f"{key}: expected {shape}, got {tuple(state[key].shape)}")
        for name in self.norm_channels:
            for key, store in (("running_mean", self.running_mean), ("running_var", self.running_var)):
                store[name] = state[f"{name}.{key}"].to(store[name].device, store[name].dtype, copy=True)


def _option_a_shortcut(h: torch.Tensor, sets: int, c_out: int, stride: int) -> torch.Tensor:
    """He et al.'s parameter-free shortcut: subsample spatially and zero-pad each set's channels
    (split evenly before and after) from C_in to c_out."""
    h = h[:, :, ::stride, ::stride]
    n, stacked, height, width = h.shape
    c_in = stacked // sets
    pad = c_out - c_in
    h = F.pad(h.reshape(n, sets, c_in, height, width), (0, 0, 0, 0, pad // 2, pad - pad // 2))
    return h.reshape(n, sets * c_out, height, width)


class ZenkeNet(_HeadsMixin, TargetNetwork):
    """The conv net of Zenke et al. (2017) for split CIFAR-10/100 (the Keras CIFAR-10 CNN
    example's layout), which the paper's Appendix D reproduces.

    conv3x3 32 'same', ReLU, conv3x3 32 'valid', ReLU, max-pool 2, dropout 0.25; the same with
    64 channels; flatten (64*6*6 = 2304 for 32x32 input); linear 2304 -> 512, ReLU, dropout
    0.5; heads 512 -> outputs_per_head. No batch norm, so `task` is ignored. Dropout only
    with train=True, drawn from torch's global RNG.

    ZenkeNet(10, 6 heads) has 1,276,508 weights: convs 896 + 9,248 + 18,496 + 36,928,
    linear 1,180,160, heads 30,780.
    """

    def __init__(self, outputs_per_head: int, num_heads: int, num_tasks: int, in_channels: int = 3):
        self.outputs_per_head, self.num_heads, self.num_tasks = outputs_per_head, num_heads, num_tasks
        self.input_shape = (in_channels, 32, 32)  # the 2304 flattened features assume 32x32 inputs
        # (name, channels in, channels out, padding) in forward order; pooling follows conv2 and conv4
        self.conv_layout = [("conv1", in_channels, 32, 1), ("conv2", 32, 32, 0),
                            ("conv3", 32, 64, 1), ("conv4", 64, 64, 0)]
        self.param_specs = [spec for name, c_in, c_out, _ in self.conv_layout
                            for spec in _conv_specs(name, c_in, c_out)]
        self.param_specs += [*_linear_specs("fc", 64 * 6 * 6, 512),
                             *_linear_specs("head", 512, outputs_per_head * num_heads, num_heads, True)]

    def forward(self, x: torch.Tensor, flat: torch.Tensor, head: int | torch.Tensor | None = 0,
                task: int | torch.Tensor | None = None, train: bool = False) -> torch.Tensor:
        """x: images (N, C, 32, 32) shared by every weight set; flat: (num_weights,) -> (N, k), or
        (B, num_weights) with head a LongTensor (B,) -> (B, N, k) (evaluation only, as
        ResNet). head=None: all heads concatenated. train=True turns dropout on."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"ZenkeNet takes images {self.input_shape}, got {tuple(x.shape[1:])}")
        if not train and (looped := self._set_by_set(x, flat, head, task)) is not None:
            return looped
        sets_flat, single = _weight_sets(flat, train)
        sets = sets_flat.shape[0]
        self._check_head(head, sets, single)
        p = dict(zip((s.name for s in self.param_specs), self.unflatten(sets_flat)))
        h = x
        for i, (name, _, _, padding) in enumerate(self.conv_layout):
            h = F.relu(_conv(h, p[f"{name}.weight"], p[f"{name}.bias"], sets, i == 0, padding=padding))
            if i % 2 == 1:
                h = F.dropout(F.max_pool2d(h, 2), 0.25, train)
        h = F.relu(_linear(_stacked_features(h, sets), p["fc.weight"], p["fc.bias"]))
        out = self._heads(F.dropout(h, 0.5, train), p["head.weight"], p["head.bias"], head)
        return out[0] if single else out

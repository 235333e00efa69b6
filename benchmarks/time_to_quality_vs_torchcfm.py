"""Wall-clock to a sample quality on the checkerboard: interflow_jax vs torchcfm recipes.

Each library trains with its own recommended 2-D recipe, N(0, I_2) -> checkerboard,
trigonometric interpolant on both sides:

- interflow_jax: experiments/configs/toy2d.py (read from the file): MLP 3 x 256 SiLU with
  32 sinusoidal time features, batch 2,048, AdamW 2e-3 with 500 warm-up steps and
  cosine decay over 20,000 steps, clipping at 1, EMA 0.999 (evaluated), 100 steps per
  jitted call, data drawn in the graph;
- torchcfm: its 2-D example recipe: `torchcfm.models.models.MLP(dim=2,
  time_varying=True)` (3 x 64 SELU, t as one input), Adam (lr 1e-3), batch 256, 20,000
  steps, with `VariancePreservingConditionalFlowMatcher(sigma=--torch_sigma)`; data by
  the same checkerboard recipe in torch.

Every --eval_every steps of each library, 2,000 samples are drawn from the model by the
same ODE solver (diffrax dopri5, rtol = atol = 1e-5; the torch network's weights are
copied into an identical JAX function) and compared with 2,000 fixed data points never
used in training: exact discrete W2 (POT `ot.emd2`, squared Euclidean cost, W2 = its
square root) and the energy distance. The libraries alternate chunk by chunk; the
reported wall-clock is training time only (evaluation excluded).

  python benchmarks/time_to_quality_vs_torchcfm.py
"""

from __future__ import annotations

import importlib.util
import os

import bench_common
import jax
import jax.numpy as jnp
import numpy as np
import optax

from interflow_jax import densities, flows, interpolants, losses, sample_quality, time_sampling
from interflow_jax.data import toy2d
from interflow_jax.models import VelocityMLP, as_field, init_params
from interflow_jax.training.optimizer import make_optimizer
from interflow_jax.training.state import create_train_state
from interflow_jax.training.step import make_multi_step, make_train_step

NAME = "time_to_quality_vs_torchcfm"
CONFIG = os.path.join(os.path.dirname(__file__), "..", "experiments", "configs", "toy2d.py")


def parse_args(argv):
    parser = bench_common.base_parser(__doc__.splitlines()[0], NAME)
    parser.add_argument("--num_steps", type=int, default=20_000, help="both recipes' length")
    parser.add_argument("--eval_every", type=int, default=1000)
    parser.add_argument("--num_eval_points", type=int, default=2000)
    parser.add_argument("--thresholds", default="0.5,0.4,0.35", help="W2 levels")
    parser.add_argument("--settle_threshold", type=float, default=0.4)
    parser.add_argument("--torch_sigma", type=float, default=0.0)
    parser.add_argument("--torch_threads", type=int, default=2)
    parser.add_argument("--omp_wait_policy", default="PASSIVE", help="PASSIVE, ACTIVE or keep")
    parser.add_argument("--max_train_seconds", type=float, default=240.0, help="per library")
    args = parser.parse_args(argv)
    args.thresholds = [float(v) for v in args.thresholds.split(",")]
    if args.smoke:
        args.num_steps, args.eval_every, args.num_eval_points = 20, 10, 200
    return args


def toy2d_config(smoke: bool):
    """experiments/configs/toy2d.py's get_config (the checkerboard; smoke variant if asked)."""
    spec = importlib.util.spec_from_file_location("toy2d_config", CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config("checkerboard,smoke" if smoke else "checkerboard")


class Ours:
    """interflow_jax training in chunks of jitted scans; samples with EMA or raw params."""

    def __init__(self, label, hidden_sizes, batch_size, optimizer, ema_decay, steps_per_call):
        self.label, self.use_ema = label, ema_decay > 0
        self.module = VelocityMLP(tuple(hidden_sizes), "silu", 32)
        self.field = as_field(self.module)
        loss_fn = losses.make_velocity_loss(
            self.field,
            interpolants.TRIGONOMETRIC,
            time_sampling.make_time_sampler(),
            base=densities.standard_gaussian((2,)),
        )
        step = make_train_step(loss_fn, optimizer, ema_decay)
        self.steps_per_call = steps_per_call
        params = init_params(self.module, jax.random.key(0), (2,))
        self.state = create_train_state(params, optimizer)
        batch_fn = self._batch_fn(batch_size)
        multi_step = make_multi_step(step, batch_fn, jax.random.key(1), steps_per_call)
        self.multi_step = jax.jit(multi_step, donate_argnums=0).lower(self.state).compile()
        self.recipe = ""

    @staticmethod
    def _batch_fn(batch_size):
        def batch_fn(key, *unused):
            return {"x1": toy2d.checkerboard_sample(key, batch_size)}

        return batch_fn

    def train(self, num_steps):
        for _ in range(num_steps // self.steps_per_call):
            self.state, metrics = self.multi_step(self.state)
        jax.block_until_ready((self.state, metrics))

    def sampling_params(self):
        return self.state.ema_params if self.use_ema else self.state.params


def ours_recipe(config, num_steps, eval_every) -> Ours:
    """The toy2d config's recipe (its model, optimiser, batch, EMA, steps per call)."""
    model, opt, train = config.model, config.optimizer, config.training
    if config.interpolant != "trigonometric" or model.activation != "silu":
        raise ValueError("the toy2d config no longer uses the trig interpolant with SiLU.")
    optimizer = make_optimizer(
        opt.learning_rate, opt.warmup_steps, num_steps, opt.grad_clip_norm, opt.weight_decay
    )
    steps_per_call = min(train.steps_per_call, eval_every)
    ours = Ours(
        "interflow_jax",
        model.hidden_sizes,
        train.batch_size,
        optimizer,
        train.ema_decay,
        steps_per_call,
    )
    ours.recipe = (
        f"experiments/configs/toy2d.py: MLP {tuple(model.hidden_sizes)} SiLU, batch "
        f"{train.batch_size}, AdamW {opt.learning_rate} warm-up {opt.warmup_steps} cosine, "
        f"clip {opt.grad_clip_norm}, EMA {train.ema_decay} (sampled)"
    )
    return ours


def ours_on_their_recipe(eval_every) -> Ours:
    """interflow_jax with torchcfm's recipe: 3 x 64, batch 256, Adam 1e-3, no EMA."""
    label = "interflow_jax, torchcfm's recipe"
    ours = Ours(label, (64, 64, 64), 256, optax.adam(1e-3), 0.0, min(100, eval_every))
    ours.recipe = "MLP (64, 64, 64) SiLU + 32 time features, batch 256, Adam 1e-3, no EMA"
    return ours


def torch_mlp_field(t, x, layers):
    """torchcfm's MLP (Linear-SELU x 3, Linear) on concat(x, t) in JAX; layers [(W, b)]."""
    h = jnp.concatenate([x, t[:, None]], axis=-1)
    for i, (weight, bias) in enumerate(layers):
        h = h @ weight.T + bias
        if i < len(layers) - 1:
            h = jax.nn.selu(h)
    return h


class Theirs:
    """torchcfm's 2-D example recipe with the trigonometric (VP) matcher."""

    label = "torchcfm"

    def __init__(self, sigma: float, batch_size: int = 256, learning_rate: float = 1e-3):
        import torch
        import torch_side
        from torchcfm.conditional_flow_matching import VariancePreservingConditionalFlowMatcher
        from torchcfm.models.models import MLP

        self.torch, self.sample_data = torch, torch_side.checkerboard
        torch.manual_seed(0)
        self.model = MLP(dim=2, time_varying=True)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=learning_rate)
        self.matcher = VariancePreservingConditionalFlowMatcher(sigma=sigma)
        self.batch_size, self.field = batch_size, torch_mlp_field
        self.recipe = (
            f"torchcfm MLP(dim=2, time_varying=True) (3 x 64 SELU), batch {batch_size}, "
            f"Adam {learning_rate}, VP matcher sigma {sigma}"
        )

    def _step(self):
        x1 = self.sample_data(self.batch_size)
        x0 = self.torch.randn_like(x1)
        t, x_t, u_t = self.matcher.sample_location_and_conditional_flow(x0, x1)
        self.optimizer.zero_grad()
        v_t = self.model(self.torch.cat([x_t, t[:, None]], dim=-1))
        self.torch.mean((v_t - u_t) ** 2).backward()
        self.optimizer.step()

    def train(self, num_steps):
        for _ in range(num_steps):
            self._step()

    def sampling_params(self):
        linears = [m for m in self.model.net if isinstance(m, self.torch.nn.Linear)]
        return [
            (jnp.asarray(m.weight.detach().numpy()), jnp.asarray(m.bias.detach().numpy()))
            for m in linears
        ]


def check_torch_port(theirs: Theirs) -> float:
    """Max |torch model - JAX copy| on random inputs (the sampler relies on the copy)."""
    x = np.random.default_rng(0).standard_normal((64, 3)).astype(np.float32)
    with theirs.torch.no_grad():
        want = theirs.model(theirs.torch.from_numpy(x)).numpy()
    got = theirs.field(jnp.asarray(x[:, 2]), jnp.asarray(x[:, :2]), theirs.sampling_params())
    return float(np.max(np.abs(np.asarray(got) - want)))


class Evaluator:
    """W2 (exact, POT) and energy distance of model samples against fixed data."""

    def __init__(self, num_points: int, options: flows.ODEOptions = flows.DEFAULT_ODE_OPTIONS):
        self.data = toy2d.checkerboard_sample(jax.random.key(10**6), num_points)
        self.num_points, self.options = num_points, options
        self.transports = {}

    def samples(self, learner, round_index):
        if learner.label not in self.transports:
            self.transports[learner.label] = flows.make_transport(learner.field, self.options)
        x0 = densities.standard_gaussian((2,)).sample(jax.random.key(round_index), self.num_points)
        out = self.transports[learner.label](learner.sampling_params(), x0, 0.0, 1.0)
        return out.x

    def scores(self, x):
        return w2(np.asarray(x), np.asarray(self.data)), float(
            sample_quality.energy_distance(x, self.data)
        )


def w2(x: np.ndarray, y: np.ndarray) -> float:
    """Exact discrete W2 between equal-weight point sets (POT network simplex)."""
    import ot  # imported late: POT imports torch, which must see OMP_WAIT_POLICY first

    x, y = x.astype(np.float64), y.astype(np.float64)
    a, b = np.full(len(x), 1.0 / len(x)), np.full(len(y), 1.0 / len(y))
    cost = ot.dist(x, y, metric="sqeuclidean")
    return float(np.sqrt(ot.emd2(a, b, cost, numItermax=10_000_000)))


def data_baseline(evaluator: Evaluator, seeds: int = 3):
    """W2 and energy distance of independent data against the fixed data (the floor)."""
    values = [
        evaluator.scores(toy2d.checkerboard_sample(jax.random.key(seed), evaluator.num_points))
        for seed in range(seeds)
    ]
    return np.mean(values, axis=0)


def train_alternating(learners, evaluator, args):
    """Chunks of eval_every steps per learner in turn; record (step, seconds, W2, ED)."""
    records = {learner.label: [] for learner in learners}
    seconds = dict.fromkeys(records, 0.0)
    for round_index in range(1, args.num_steps // args.eval_every + 1):
        for learner in learners:
            if seconds[learner.label] >= args.max_train_seconds:
                continue
            seconds[learner.label] += bench_common.timed(
                lambda lrn=learner: lrn.train(args.eval_every)
            )
            score = evaluator.scores(evaluator.samples(learner, round_index))
            records[learner.label].append(
                (round_index * args.eval_every, seconds[learner.label], *score)
            )
    return records


def first_time(record, threshold):
    """'seconds (steps)' of the first evaluation with W2 <= threshold."""
    hit = next((r for r in record if r[2] <= threshold), None)
    return f"{hit[1]:.1f} s ({hit[0]} steps)" if hit else "not reached"


def settled_time(record, threshold):
    """'seconds (steps)' after which every evaluation has W2 <= threshold."""
    index = len(record)
    while index > 0 and record[index - 1][2] <= threshold:
        index -= 1
    if index == len(record):
        return "not settled"
    return f"{record[index][1]:.1f} s ({record[index][0]} steps)"


def summary_rows(records, thresholds, settle):
    rows = []
    for label, record in records.items():
        row = [label] + [first_time(record, threshold) for threshold in thresholds]
        row.append(settled_time(record, settle))
        last = record[-1]
        row += [last[0], last[1], min(r[2] for r in record), last[2], last[3]]
        rows.append(row)
    return rows


def curve_rows(records):
    """Every evaluation: library, steps, training seconds, W2, energy distance."""
    return [[label, *row] for label, record in records.items() for row in record]


def plot(records, baseline, outdir):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, record in records.items():
        record = np.asarray(record)
        ax.plot(record[:, 1], record[:, 2], "o-", ms=3, label=label)
    ax.axhline(baseline[0], color="k", lw=1, ls="--", label="data vs data")
    ax.set(xscale="log", yscale="log", xlabel="training wall-clock (s)", ylabel="W2 (2,000 points)")
    bench_common.finish_plot(
        fig, ax, "checkerboard: sample quality against training time", outdir, "w2_vs_time.png"
    )


def main(argv=None):
    args, lines = bench_common.start(
        parse_args, argv, "Time to sample quality on the checkerboard: interflow_jax vs torchcfm"
    )
    policy = bench_common.set_omp_wait_policy(args.omp_wait_policy)
    import torch

    torch.set_num_threads(args.torch_threads)
    learners = [
        ours_recipe(toy2d_config(args.smoke), args.num_steps, args.eval_every),
        Theirs(args.torch_sigma),
    ]
    if not args.smoke:  # one compilation less in the smoke run
        learners.append(ours_on_their_recipe(args.eval_every))
    smoke_solver = flows.ODEOptions(solver="heun", num_steps=4)
    evaluator = Evaluator(args.num_eval_points, smoke_solver if args.smoke else flows.ODEOptions())
    baseline = data_baseline(evaluator)
    lines += [f"- {learner.label}: {learner.recipe}" for learner in learners]
    lines.append(f"- torch threads {torch.get_num_threads()}, OMP_WAIT_POLICY {policy}")
    lines.append(
        f"- {args.num_steps} steps each (cap {args.max_train_seconds} s of training), evaluated "
        f"every {args.eval_every}; torch port max error {check_torch_port(learners[1]):.2e}; "
        f"data vs data (3 seeds): W2 {baseline[0]:.4f}, energy distance {baseline[1]:.5f}"
    )
    records = train_alternating(learners, evaluator, args)
    columns = ["library"] + [f"first W2 <= {t}" for t in args.thresholds]
    columns.append(f"W2 <= {args.settle_threshold} from then on")
    columns += ["steps", "train s", "best W2", "final W2", "final energy dist."]
    lines += [""] + bench_common.markdown_table(
        columns, summary_rows(records, args.thresholds, args.settle_threshold)
    )
    curve_columns = ["library", "steps", "train s", "W2", "energy distance"]
    lines += ["", "Every evaluation:", ""]
    lines += bench_common.markdown_table(curve_columns, curve_rows(records))
    bench_common.write_report(args.outdir, lines)
    plot(records, baseline, args.outdir)
    return records


if __name__ == "__main__":
    main()

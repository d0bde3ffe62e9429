"""Shared pieces of the benchmarks: batch shapes, datasets in /tmp, models, a bare loop, timers.

Every benchmark script prints ONE JSON line of figures on stdout (logs go to stderr).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import platform
import resource
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path
from statistics import median
from typing import Any

import torch

from lit_omarl.spec import EnvSpec

# Batch shapes (per agent obs, global state, actions, episode limit = steps per padded episode).
SHAPES: dict[str, dict[str, int]] = {
    # SMAC 2s3z as in the CFCQL datasets: 5 agents, obs 80, state 120, 11 actions, 120 steps (+1 obs)
    "smac_2s3z": {"n_agents": 5, "obs_dim": 80, "state_dim": 120, "n_actions": 11, "episode_limit": 120},
    # SMAX 2s3z (jaxmarl), REFERENCE.md: obs 127, state 120, 10 actions, episodes capped at 100 steps
    "smax_2s3z": {"n_agents": 5, "obs_dim": 127, "state_dim": 120, "n_actions": 10, "episode_limit": 100},
}
# Continuous shapes (transition batches): mabcq.md Table 6's HalfCheetah 2x3 / Ant 4x2 (agents see the
# state: obs = state size) and MPE cooperative navigation (simple_spread, 3 agents).
CONTINUOUS_SHAPES: dict[str, dict[str, int]] = {
    "halfcheetah_2x3": {"n_agents": 2, "obs_dim": 17, "state_dim": 17, "n_actions": 3, "episode_limit": 100},
    "ant_4x2": {"n_agents": 4, "obs_dim": 27, "state_dim": 27, "n_actions": 2, "episode_limit": 100},
    "mpe_spread": {"n_agents": 3, "obs_dim": 18, "state_dim": 54, "n_actions": 2, "episode_limit": 25},
}
# Batch of each shape in the issue's and papers' setting: episodes (discrete) or transitions (continuous).
DEFAULT_BATCH = {"smac_2s3z": 128, "smax_2s3z": 128, "smax_6h_vs_8z": 128, "bridge": 32,
                 "halfcheetah_2x3": 256, "ant_4x2": 256, "mpe_spread": 1024}
# Only for the memory estimate of bench_data.py (cfcql.md App. D.5 trains on 50,000 episodes of 6h_vs_8z).
EXTRA_SHAPES: dict[str, dict[str, int]] = {
    "smax_6h_vs_8z": {"n_agents": 6, "obs_dim": 179, "state_dim": 168, "n_actions": 13, "episode_limit": 100},
    # a small task (lit_omarl.envs bridge): updates of a few ms, where per-step Trainer overhead shows
    "bridge": {"n_agents": 2, "obs_dim": 8, "state_dim": 8, "n_actions": 5, "episode_limit": 50},
}
BENCH_DIR = Path(os.environ.get("LIT_OMARL_BENCH_DIR", "/tmp/lit_omarl_bench"))


def quiet() -> None:
    """Silence Lightning's banners and warnings so stdout holds only the JSON line."""
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lit_omarl"):
        logging.getLogger(name).setLevel(logging.ERROR)


def child_env(omp_wait_policy: str = "default") -> dict[str, str]:
    """Environment of a measuring subprocess (OMP_WAIT_POLICY set unless "default")."""
    env = dict(os.environ)
    if omp_wait_policy != "default":
        env["OMP_WAIT_POLICY"] = omp_wait_policy.upper()
    return env


ALL_SHAPES = {**SHAPES, **EXTRA_SHAPES, **CONTINUOUS_SHAPES}


def run_child(cmd: list[str], label: str, omp_wait_policy: str = "default", timeout: float | None = None) -> dict[str, Any]:
    """Run a measuring subprocess; its last JSON line (printed to stderr under ``label`` too), or
    ``{"skipped": reason}`` when it printed none or ran out of ``timeout`` seconds."""
    import subprocess

    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(omp_wait_policy), timeout=timeout)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        res = json.loads(lines[-1]) if lines else {"skipped": f"no output (exit {proc.returncode}): {proc.stderr[-300:]}"}
    except subprocess.TimeoutExpired:
        res = {"skipped": f"timeout after {timeout:.0f} s"}
    print(f"{label}: {json.dumps(res)}", file=sys.stderr, flush=True)
    return res


def spec_of(shape: str) -> EnvSpec:
    kind = "continuous" if shape in CONTINUOUS_SHAPES else "discrete"
    return EnvSpec(env_id=f"bench/{shape}", action_type=kind, **ALL_SHAPES[shape])


def machine_info() -> dict[str, Any]:
    """Machine, versions, threads and load average (the benchmarks share the cores with others)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import lightning

    import lit_omarl

    return {
        "lit_omarl": str(Path(lit_omarl.__file__).resolve().parent),  # which code was measured
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB).

    Linux: VmHWM of /proc/self/status (ru_maxrss would also count the parent's
    memory at fork time, which survives exec in the child's maximum).
    """
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        return peak / 1024**2 if sys.platform == "darwin" else peak / 1024


def current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024**2
    except OSError:
        return float("nan")


def dataset_file(shape: str, episodes: int, seed: int = 0, directory: Path = BENCH_DIR) -> Path:
    """A schema-v1 file of full-length random episodes of ``shape`` (written once, then reused)."""
    from lit_omarl.data.schema import example_arrays, write_dataset

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{shape}_{episodes}ep_s{seed}.h5"
    if path.exists():
        return path
    spec = spec_of(shape)
    arrays = example_arrays(spec, episodes, seed=seed, lengths=[spec.episode_limit] * episodes)
    try:
        write_dataset(path, arrays, {"spec": spec, "quality": "random", "generator": "benchmarks"})
    except FileExistsError:
        pass  # written meanwhile by another benchmark process
    return path


def make_datamodule(shape: str, batch_size: int, episodes: int = 256, sampling: str | None = None,
                    episode_index: bool = True, path: str | None = None, max_episodes: int | None = None):
    """The benchmark's OfflineDataModule over the synthetic file of ``shape`` (or over ``path``, a real
    dataset, its first ``max_episodes``). ``sampling``: episodes for discrete shapes, transitions for
    continuous ones unless given. ``episode_index=False`` drops the ``episode`` batch key (as in
    batches built by hand), so CFCQL recomputes the behaviour probabilities every update."""
    from lit_omarl.data.datamodule import OfflineDataModule

    sampling = sampling or ("transition" if shape in CONTINUOUS_SHAPES else "episode")

    cls = OfflineDataModule if episode_index else _without_episode_key(OfflineDataModule)
    path = path or str(dataset_file(shape, episodes))
    dm = cls(path=path, batch_size=batch_size, sampling=sampling, seed=0, max_episodes=max_episodes)
    dm.setup("fit")
    return dm


def _without_episode_key(base: type) -> type:
    """The datamodule with the same draws, minus the ``episode`` key (no per-episode caches)."""

    class WithoutEpisodeKey(base):
        def sample(self, batch_size: int | None = None) -> dict[str, torch.Tensor]:
            batch = super().sample(batch_size)
            batch.pop("episode", None)
            return batch

    return WithoutEpisodeKey


def fast_overrides(cls: type) -> dict[str, Any]:
    """Constructor overrides that keep a benchmark short: no evaluation, (almost) no pre-training."""
    params = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            params |= set(inspect.signature(klass.__init__).parameters)
    out: dict[str, Any] = {"eval_every_steps": 0, "final_eval_episodes": 0}
    for name in params:
        if "pretrain" in name and name.endswith("steps"):
            out[name] = 2
        elif name.endswith("patience"):
            out[name] = 0
    return out


def make_model(name: str, spec: EnvSpec, seed: int = 0, **overrides: Any):
    from lit_omarl.algos import ALGORITHMS

    cls = ALGORITHMS[name]
    torch.manual_seed(seed)
    return cls(spec=spec.to_dict(), **{**fast_overrides(cls), **overrides})


# ----------------------------------------------------------------------------- timing


class Segments:
    """Accumulates wall time per named segment (re-entrant calls are counted once, by the outer one)."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self._depth: dict[str, int] = defaultdict(int)

    def wrap(self, obj: Any, attr: str, label: str) -> None:
        fn = getattr(obj, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._depth[label]:
                return fn(*args, **kwargs)
            self._depth[label] += 1
            start, start_cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.total[label] += time.perf_counter() - start
                self.cpu[label] += time.process_time() - start_cpu
                self._depth[label] -= 1

        setattr(obj, attr, timed)

    def reset(self) -> None:
        self.total.clear()
        self.cpu.clear()


# ----------------------------------------------------------------------------- the bare loop


class _StubOptimizer:
    """What ``self.optimizers()`` returns in the bare loop: a raw optimizer whose step counts global steps."""

    def __init__(self, optimizer: torch.optim.Optimizer, trainer: "_StubTrainer") -> None:
        self.optimizer = optimizer
        self._trainer = trainer

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Any = None) -> Any:
        out = self.optimizer.step(closure)
        self._trainer.global_step += 1
        return out

    @property
    def param_groups(self) -> list:
        return self.optimizer.param_groups


class _StubTrainer:
    """The few Trainer attributes an algorithm reads during training."""

    def __init__(self, datamodule: Any) -> None:
        self.datamodule = datamodule
        self.global_step = 0
        self.current_epoch = 0
        self.logger = None
        self.loggers: list = []
        self.log_every_n_steps = 50
        self.max_steps = -1
        self.should_stop = False
        self.fast_dev_run = False
        self.sanity_checking = False
        self.training = True


def _optimizer_list(configured: Any) -> list[torch.optim.Optimizer]:
    if isinstance(configured, torch.optim.Optimizer):
        return [configured]
    if isinstance(configured, dict):
        return [configured["optimizer"]]
    if isinstance(configured, tuple) and len(configured) == 2 and isinstance(configured[0], (list, tuple)):
        configured = configured[0]
    return [o["optimizer"] if isinstance(o, dict) else o for o in configured]


class BareLoop:
    """Runs an algorithm's own ``training_step`` in a plain PyTorch loop, without Lightning's Trainer.

    ``self.optimizers()``, ``manual_backward``, ``clip_gradients``, ``log`` and
    ``trainer.global_step`` are replaced by their minimal PyTorch equivalents
    (backward, clip_grad_norm_, nothing, a counter), so the update's math is
    the module's own and only the Trainer machinery is missing.
    """

    def __init__(self, model: Any, datamodule: Any) -> None:
        self.model, self.dm = model, datamodule
        self.trainer = _StubTrainer(datamodule)
        model._trainer = self.trainer
        raw = _optimizer_list(model.configure_optimizers())
        wrapped = [_StubOptimizer(o, self.trainer) for o in raw]
        model.optimizers = lambda use_pl_optimizer=True: (wrapped[0] if len(wrapped) == 1 else wrapped)
        model.lr_schedulers = lambda: None
        model.manual_backward = lambda loss, *a, **k: loss.backward(*a, **k)
        model.clip_gradients = self._clip
        model.log = lambda *a, **k: None
        model.log_dict = lambda *a, **k: None
        model.train()
        model.setup("fit")
        model.on_fit_start()
        model.on_train_start()
        self.batch_idx = 0

    @staticmethod
    def _clip(optimizer: Any, gradient_clip_val: float | None = None, gradient_clip_algorithm: str | None = None) -> None:
        if not gradient_clip_val:
            return
        opt = getattr(optimizer, "optimizer", optimizer)
        params = [p for g in opt.param_groups for p in g["params"]]
        if gradient_clip_algorithm == "value":
            torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)

    def step(self) -> None:
        batch = self.dm.sample()
        self.model.training_step(batch, self.batch_idx)
        self.model.on_train_batch_end(None, batch, self.batch_idx)
        self.batch_idx += 1

    def timed_steps(self, n: int, warmup: int = 0) -> tuple[list[float], list[float]]:
        """Wall and CPU seconds of each of ``n`` updates (sampling included), after ``warmup`` untimed ones."""
        for _ in range(warmup):
            self.step()
        wall, cpu = [], []
        for _ in range(n):
            w, c = time.perf_counter(), time.process_time()
            self.step()
            wall.append(time.perf_counter() - w)
            cpu.append(time.process_time() - c)
        return wall, cpu

    def detach(self) -> None:
        """Give the module back: remove the instance-level replacements."""
        for attr in ("optimizers", "lr_schedulers", "manual_backward", "clip_gradients", "log", "log_dict"):
            self.model.__dict__.pop(attr, None)
        self.model._trainer = None


# ----------------------------------------------------------------------------- the Lightning Trainer


class _StepClock:
    """Callback: wall and CPU time between consecutive ends of training batches."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self._last: tuple[float, float] | None = None

    def hook(self) -> Any:
        import lightning as L

        clock = self

        class Clock(L.Callback):
            def on_train_batch_end(self, *args: Any) -> None:
                now = (time.perf_counter(), time.process_time())
                if clock._last is not None:
                    clock.wall.append(now[0] - clock._last[0])
                    clock.cpu.append(now[1] - clock._last[1])
                clock._last = now

        return Clock()


# Untimed updates at the start of every timed block (Trainer and bare alike): a fit start empties
# per-fit caches (CFCQL's behaviour probabilities per dataset episode), and a long run spends
# nearly all its updates in the steady state these warm-ups reach.
WARMUP_UPDATES = 3


def trainer_steps(model: Any, dm: Any, n: int, log_dir: Path | None = None,
                  warmup: int = WARMUP_UPDATES) -> tuple[list[float], list[float]]:
    """Fit ``n + warmup`` updates in a fresh Lightning Trainer; wall and CPU seconds of the last ``n``.

    Each update is timed from the end of the previous one, so the Trainer's
    per-step work (fetching the batch, hooks, logging) is included and its
    one-off setup is not. A CSV logger writes every 50 steps as in real runs.
    """
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    clock = _StepClock()
    logger = CSVLogger(str(log_dir or BENCH_DIR / "logs"), name="bench") if log_dir is not False else False
    trainer = L.Trainer(
        max_steps=n + max(1, warmup),
        logger=logger,
        log_every_n_steps=50,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        callbacks=[clock.hook()],
    )
    trainer.fit(model, datamodule=dm)
    return clock.wall[-n:], clock.cpu[-n:]


def paired_steps(model: Any, dm: Any, n: int, warmup: int = WARMUP_UPDATES, updates_per_step: int = 1) -> dict[str, list[float]]:
    """``n`` Lightning training steps, each followed by the same number of updates of an identical copy
    of the module in a bare loop (same data module), timed pair by pair; per-update seconds.

    A training step holds ``updates_per_step`` updates (``data.updates_per_step``). Trainer step i is
    timed from the end of the previous pair to the end of its own training batch (the Trainer's
    per-step work included, the copy's updates excluded); the copy's updates right after it.
    Adjacent pairs see the same machine load, so on a shared machine their ratio is far steadier
    than that of separate blocks. Returns wall and CPU seconds per update: trainer_wall,
    trainer_cpu, bare_wall, bare_cpu (``n`` each, after ``warmup`` untimed pairs).
    """
    import copy

    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    k = int(updates_per_step)
    twin = BareLoop(copy.deepcopy(model), dm)
    out: dict[str, list[float]] = {"trainer_wall": [], "trainer_cpu": [], "bare_wall": [], "bare_cpu": []}
    state = {"count": 0, "last": None}

    class Pair(L.Callback):
        def on_train_batch_end(self, *args: Any) -> None:
            now = (time.perf_counter(), time.process_time())
            timed = state["count"] >= warmup and state["last"] is not None
            if timed:
                out["trainer_wall"].append((now[0] - state["last"][0]) / k)
                out["trainer_cpu"].append((now[1] - state["last"][1]) / k)
            w, c = twin.timed_steps(k)
            if timed:
                out["bare_wall"].append(sum(w) / k)
                out["bare_cpu"].append(sum(c) / k)
            state["count"] += 1
            state["last"] = (time.perf_counter(), time.process_time())

    saved, dm.updates_per_step = getattr(dm, "updates_per_step", 1), k
    try:
        trainer = L.Trainer(max_steps=(n + warmup) * k, logger=CSVLogger(str(BENCH_DIR / "logs"), name="bench"),
                            log_every_n_steps=50, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, accelerator="cpu", callbacks=[Pair()])
        trainer.fit(model, datamodule=dm)
    finally:
        dm.updates_per_step = saved
    twin.detach()
    return out


def summary(seconds: list[float]) -> dict[str, float]:
    return {"median_s": round(median(seconds), 5), "min_s": round(min(seconds), 5), "n": len(seconds)}


RESULTS_DIR = Path(__file__).resolve().parent / "results"


def emit(figures: dict[str, Any], save_as: str | None = None) -> None:
    """The one JSON line of a benchmark.

    With ``save_as`` (the final line of a script, not a child's) the line also
    gets a UTC ``timestamp`` and, if missing, the ``machine`` record (CPU,
    torch version, threads, load average), and is appended to
    ``benchmarks/results/<save_as>.jsonl`` (directory overridable with
    ``LIT_OMARL_BENCH_RESULTS``; ``LIT_OMARL_BENCH_RESULTS=off`` prints only).
    """
    if save_as is not None:
        figures = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures}
        figures.setdefault("machine", machine_info())
    line = json.dumps(figures, sort_keys=False)
    print(line, flush=True)
    target = os.environ.get("LIT_OMARL_BENCH_RESULTS", str(RESULTS_DIR))
    if save_as is not None and target != "off":
        path = Path(target) / f"{save_as}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(line + "\n")
        print(f"appended to {path}", file=sys.stderr)


def instrument(bare: BareLoop, segments: Segments) -> None:
    """Time the parts of an update in a bare loop: sampling, regulariser, backward, optimizer, target update.

    Whatever is not in a named part (forward passes, targets, losses, metrics)
    is reported as ``forward_and_other``.
    """
    import lit_omarl.algos as algos

    model = bare.model
    segments.wrap(bare.dm, "sample", "sampling")
    if hasattr(model, "conservative_gap"):
        segments.wrap(model, "conservative_gap", "regulariser")
    segments.wrap(model, "manual_backward", "backward")
    segments.wrap(model, "clip_gradients", "optimizer")
    segments.wrap(torch.nn.utils, "clip_grad_norm_", "optimizer")
    opts = model.optimizers()
    for opt in opts if isinstance(opts, list) else [opts]:
        segments.wrap(opt.optimizer, "step", "optimizer")
    for name, child in model.named_children():
        if "target" in name:
            segments.wrap(child, "load_state_dict", "target_update")
    for mod_name, mod in list(sys.modules.items()):
        if mod_name.startswith(algos.__name__ + ".") and hasattr(mod, "soft_update"):
            segments.wrap(mod, "soft_update", "target_update")

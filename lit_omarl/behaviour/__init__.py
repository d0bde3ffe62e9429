"""Behaviour policies trained online, used to generate datasets of environments without scripted experts.

* :mod:`lit_omarl.behaviour.qmix_online`: QMIX trained online on a batched
  env (SMAX); writes checkpoints at test-win-rate milestones and the replay
  buffer (``medium_replay``). ``python -m lit_omarl.behaviour.qmix_online --help``.
* :class:`PolicyBehaviour`: a checkpoint as a behaviour of
  :mod:`lit_omarl.data.generate` (``begin`` / ``act``), greedy, with the
  one-hot probabilities of its actions (so ``epsilon:E:policy:<ckpt>``
  records exact ``behaviour_probs``).
* Shipped policies live in ``lit_omarl/assets/behaviour/<env dir>/<name>.pt``
  (e.g. ``smax_2s3z/expert.pt``); ``policy:smax_2s3z/expert`` names one
  without a path (:func:`resolve_policy`, :func:`shipped_policies`).
* :mod:`lit_omarl.behaviour.mappo_online`: MAPPO trained online on the same
  envs with the same outputs (for the maps QMIX does not learn here).
* :mod:`lit_omarl.behaviour.recipe`: the papers' SMAX dataset recipe
  (``lit-omarl data smax-recipe``).
* :mod:`lit_omarl.behaviour.ship`: picks a QMIX run's medium / expert
  policies and ships them (``python -m lit_omarl.behaviour.ship``).
* :mod:`lit_omarl.behaviour.matd3_online`: MATD3 trained online on the
  continuous envs (MPE, MaMuJoCo), checkpoints usable as ``policy:`` behaviours.
* :mod:`lit_omarl.behaviour.mpe_prey`: trains the fixed MPE prey shipped in
  ``assets/behaviour/mpe_prey/`` (``prey_policy="pretrained"``).
* :mod:`lit_omarl.behaviour.continuous_recipe`: the OMAR / CFCQL continuous
  recipe (random / medium_replay / medium / expert;
  ``lit-omarl data continuous-recipe``).
* :func:`load_policy`: a checkpoint as a policy with the ``act(obs, avail,
  hidden, deterministic)`` contract of :mod:`lit_omarl.eval.rollout`, e.g.
  ``evaluate(load_policy(path), "smax/2s3z", None, episodes=32, seed=0,
  deterministic=True)``.

Nothing here imports JAX; the env does when it is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lit_omarl.data.generate import Behaviour, BehaviourError
from lit_omarl.spec import EnvSpec

# imported on first use, so ``python -m lit_omarl.behaviour.qmix_online`` does not import the module twice
_LAZY = ("QMIXLearner", "QMIXOnlineConfig", "QMIXPolicy", "save_checkpoint", "train_qmix")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from lit_omarl.behaviour import qmix_online

        return getattr(qmix_online, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


ASSETS = Path(__file__).resolve().parents[1] / "assets" / "behaviour"


def shipped_policies(env_dir: str) -> dict[str, Path]:
    """The checkpoints shipped for ``env_dir`` (e.g. ``smax_2s3z``): name -> path ({} if none)."""
    folder = ASSETS / env_dir
    return {p.stem: p for p in sorted(folder.glob("*.pt"))} if folder.is_dir() else {}


def resolve_policy(name: str | Path) -> Path:
    """A checkpoint path: ``name`` itself if it is a file, else the shipped policy
    ``assets/behaviour/<name>`` or ``<name>.pt`` (e.g. ``smax_2s3z/expert``).

    Raises FileNotFoundError naming what was looked for.
    """
    path = Path(name).expanduser()
    if path.is_file():
        return path
    text = str(name).strip().strip("/")
    for candidate in (ASSETS / text, ASSETS / f"{text}.pt"):
        if candidate.is_file() and ASSETS in candidate.resolve().parents:
            return candidate
    shipped = sorted(f"{d.name}/{p.stem}" for d in ASSETS.iterdir() if d.is_dir() for p in d.glob("*.pt")) if ASSETS.is_dir() else []
    raise FileNotFoundError(f"policy {str(name)!r}: no such file, and not a shipped policy "
                            f"(shipped: {', '.join(shipped) or 'none'})")


def load_policy(path: str | Path, epsilon: float = 0.0) -> Any:
    """The policy of a ``qmix_online`` or ``mappo_online`` checkpoint, greedy by default (QMIX:
    ``epsilon``-greedy when acting with deterministic=False; MAPPO: a sample of its softmax).

    ``path`` may also name a shipped policy (:func:`resolve_policy`)."""
    from lit_omarl.behaviour.mappo_online import CHECKPOINT_FORMAT as MAPPO_FORMAT
    from lit_omarl.behaviour.mappo_online import MAPPOPolicy
    from lit_omarl.behaviour.qmix_online import QMIXPolicy

    path = resolve_policy(path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: not a policy checkpoint (a {type(ckpt).__name__}, expected a dict)")
    fmt = ckpt.get("format")
    if fmt == MAPPO_FORMAT:
        return MAPPOPolicy.load(path)
    return QMIXPolicy.load(path, epsilon)


class PolicyBehaviour(Behaviour):
    """A trained policy checkpoint as a generation behaviour (text ``policy:<path>``).

    Acts greedily over available actions; its action probabilities are the
    one-hot of the chosen actions. The checkpoint's spec must match the env's
    (agents, observation, state and action sizes).
    """

    has_probs = True

    def __init__(self, text: str, spec: EnvSpec, path: str | Path) -> None:
        super().__init__(text, spec)
        try:
            self.path = resolve_policy(path)
            self.policy = load_policy(self.path)
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise BehaviourError(text, f"cannot load policy checkpoint {str(path)!r}: {err}") from None
        own = self.policy.spec
        keys = ("n_agents", "obs_dim", "state_dim", "n_actions")
        diff = {k: (getattr(own, k), getattr(spec, k)) for k in keys if getattr(own, k) != getattr(spec, k)}
        if diff:
            raise BehaviourError(text, f"checkpoint of {own.env_id!r} does not fit env {spec.env_id!r} (checkpoint, env): {diff}")
        self.hidden: Any = None

    def begin(self, ts, episode_index, generator) -> None:
        self.hidden = None

    @torch.no_grad()
    def act(self, ts, generator):
        actions, self.hidden = self.policy.act(ts.obs, ts.avail, self.hidden, deterministic=True)
        return actions, torch.nn.functional.one_hot(actions, self.spec.n_actions).float()


def policy_behaviour(text: str, spec: EnvSpec) -> PolicyBehaviour:
    """Parse ``policy:<path>`` (the hook lit_omarl.data.generate.parse_behaviour needs for ``policy:``)."""
    head, sep, path = text.strip().partition(":")
    if head != "policy" or not sep or not path.strip():
        raise BehaviourError(text, "expected policy:<checkpoint path>")
    return PolicyBehaviour(text, spec, path.strip())


__all__ = [
    "ASSETS",
    "PolicyBehaviour",
    "QMIXLearner",
    "QMIXOnlineConfig",
    "QMIXPolicy",
    "load_policy",
    "policy_behaviour",
    "resolve_policy",
    "save_checkpoint",
    "shipped_policies",
    "train_qmix",
]

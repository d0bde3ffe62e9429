"""The one description of a multi-agent task shared by environments, datasets and models.

An :class:`EnvSpec` is produced by an environment (``make(...).spec``) and by a
dataset file (its attributes); the DataModule exposes it and LightningCLI links
it into the model (``data.spec -> model.spec``) so no dimension is typed twice.
It is stored as a plain dict in checkpoints and HDF5 attributes (no pickle).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

ActionType = Literal["discrete", "continuous"]


@dataclass(frozen=True)
class EnvSpec:
    """Dimensions of a cooperative multi-agent task.

    Attributes:
        env_id: registry id, e.g. ``matrix/xor``, ``bridge``, ``smax/2s3z``.
        n_agents: number of learning agents N.
        obs_dim: per-agent observation size O (padded to the largest agent).
        state_dim: global state size S.
        n_actions: number of discrete actions A, or the action dimension for
            continuous tasks.
        action_type: ``"discrete"`` or ``"continuous"``.
        episode_limit: maximum number of steps T of an episode.
        env_options: keyword options of ``lit_omarl.envs.make`` that rebuild
            exactly this task (e.g. a payoff matrix or ``n`` for Equal_Line).
        action_low / action_high: bounds of continuous actions.
    """

    env_id: str
    n_agents: int
    obs_dim: int
    state_dim: int
    n_actions: int
    action_type: ActionType = "discrete"
    episode_limit: int = 1
    env_options: dict[str, Any] = field(default_factory=dict)
    action_low: float = -1.0
    action_high: float = 1.0

    def __post_init__(self) -> None:
        if self.action_type not in ("discrete", "continuous"):
            raise ValueError(f"EnvSpec.action_type must be 'discrete' or 'continuous', got {self.action_type!r}")
        for name in ("n_agents", "obs_dim", "state_dim", "n_actions", "episode_limit"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"EnvSpec.{name} must be a positive int, got {value!r}")

    @property
    def discrete(self) -> bool:
        return self.action_type == "discrete"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | EnvSpec) -> EnvSpec:
        if isinstance(data, EnvSpec):
            return data
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["env_options"] = dict(known.get("env_options") or {})
        for name in ("n_agents", "obs_dim", "state_dim", "n_actions", "episode_limit"):
            if name in known:
                known[name] = int(known[name])
        for name in ("action_low", "action_high"):
            if name in known:
                known[name] = float(known[name])
        return cls(**known)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EnvSpec:
        return cls.from_dict(json.loads(text))

"""MADTKD: offline MARL with knowledge distillation (Tseng et al., NeurIPS 2022), discrete actions.

Each agent's policy is a small decision transformer (shared weights, agent id
in the input) over its own trajectory of (return, observation, action)
tokens. A centralised teacher transformer, which also sees the global state
(or all agents' observations), is first trained by behaviour cloning; the
decentralised students are then trained by behaviour cloning plus
distillation of the teacher's action distributions and of the teacher's
inter-agent feature relations. The CFCQL paper (App. C.3) uses it as a
baseline implemented on top of MADT, as its authors released no code.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from lit_omarl.algos.base import Batch, OfflineMARLModule, register_algorithm
from lit_omarl.algos.losses import NEG_INF, bc_nll, ensure_some_available
from lit_omarl.algos.losses.madtkd import madtkd_loss, returns_to_go
from lit_omarl.nets.transformer import DecisionTransformer, adamw_param_groups

ReturnMode = Literal["episode_return", "return_to_go", "none"]


@register_algorithm("madtkd")
class MADTKD(OfflineMARLModule):
    """Decision-transformer students distilled from a centralised teacher.

    Tokens of agent i at step t: R_t, x_t = [o_i,t, id_i] (student) or
    [o_i,t, id_i, s_t] / [o_i,t, id_i, o_1..N,t] (teacher, ``teacher_inputs``),
    and a_i,t; sliding-window causal attention over the last
    ``context_length`` steps (see :mod:`lit_omarl.nets.transformer`); a_i,t is
    predicted from the output at x_t. The teacher pi_T is pre-trained by
    behaviour cloning (``teacher_pretrain_steps`` updates) and frozen; the
    student pi_S (shared by all agents) minimises

        - mean log pi_S(a^data) + kd_coef * mean KL(pi_T || pi_S)
          + relation_coef * sum_{i != j} mean Huber(cos(f^T_i, f^T_j), cos(g(f^S_i), g(f^S_j)))

    over available actions, where f are the transformer features at the x
    tokens and g a small student mapping MLP (the structural relation term).

    Return conditioning (``return_conditioning``): "episode_return" feeds the
    episode's return R (scaled by ``return_scale``) at every step;
    "return_to_go" the Decision Transformer's R_t = sum_{s >= t} r_s; "none"
    drops the return token. ``act()`` conditions on ``target_return`` (None =
    the best episode return seen in training) and keeps the token history of
    the episode in ``hidden``. The evaluation loop does not pass rewards to
    ``act()``, so the return token stays at the target during a rollout
    (exact for "episode_return"); call :meth:`observe_reward` after each step
    to decrement it as the Decision Transformer does.

    Deviations (from the CFCQL code's ``baseline_madtkd``, built on MADT):
        - Default tokens (R, x, a) with context 20, embed 64, 2 layers; the
          code's config uses ``state_only`` tokens, context 1, embed 32, 1
          layer (all configurable here: ``return_conditioning="none"``,
          ``context_length``, ``embed_dim``, ``n_layers``).
        - Return conditioning defaults to the episode return, not the
          return-to-go, because ``act()`` receives no rewards (see above).
        - The teacher is one transformer per agent whose input also holds the
          global state, not one sequence interleaving all agents' tokens; it is
          pre-trained here (early stop after ``teacher_patience`` updates
          without a new minimum if > 0) instead of loaded from a separate run,
          and not updated during distillation (the code updates its mapping
          net only in its first 3 student updates, a ``//`` for ``%`` slip).
        - Relation targets are the teacher's transformer features (the code
          passes them through the teacher's untrained mapping net).
        - Training runs each whole episode in one pass with sliding-window
          attention instead of one pass per context window; act() keeps the
          receptive field so it reproduces the training outputs exactly.
        - Evaluation is greedy (the code's multinomial selector in test mode).

    Args:
        spec: the dataset's EnvSpec as a dict (linked from ``data.spec``).
        lr: AdamW learning rate of the student (code 5e-4, betas 0.9/0.95).
        weight_decay: AdamW weight decay on Linear weights (code 0.1).
        grad_clip_norm: gradient-norm clipping (<= 0 disables; the code does not clip).
        embed_dim: transformer width.
        n_layers: transformer blocks.
        n_heads: attention heads.
        context_length: steps each token attends over.
        dropout: dropout inside the transformer (code 0).
        return_conditioning: "episode_return", "return_to_go" or "none".
        return_scale: divide returns by this before embedding; None = the
            largest |episode return| of the first training batch (stored).
        target_return: return to condition on when acting; None = best
            episode return seen in training (stored).
        teacher_inputs: extra centralised input of the teacher: "state" or
            "joint_obs" (all agents' observations).
        kd_coef: weight of KL(teacher || student) (code ``alpha`` 0.5).
        relation_coef: weight of the relation term (code ``beta`` 0.5; 0 = off).
        teacher_pretrain_steps: behaviour-cloning updates of the teacher
            before distillation (one ``datamodule.sample()`` batch each).
        teacher_patience: stop teacher training after this many updates
            without a new minimum loss; 0 = run all steps.
        teacher_lr: AdamW learning rate of the teacher; None = ``lr``.
        use_last_action: also append the previous action one-hot to x_t
            (redundant with the action tokens; off by default).
        **kwargs: arguments of :class:`OfflineMARLModule` (gamma unused;
            ``agent`` / ``agent_hidden_dim`` are ignored: the policy is the
            transformer; use_agent_id, eval settings, seed).
    """

    def __init__(
        self,
        spec: dict | None = None,
        lr: float = 5e-4,
        weight_decay: float = 0.1,
        grad_clip_norm: float = 1.0,
        embed_dim: int = 64,
        n_layers: int = 2,
        n_heads: int = 1,
        context_length: int = 20,
        dropout: float = 0.0,
        return_conditioning: ReturnMode = "episode_return",
        return_scale: float | None = None,
        target_return: float | None = None,
        teacher_inputs: Literal["state", "joint_obs"] = "state",
        kd_coef: float = 0.5,
        relation_coef: float = 0.5,
        teacher_pretrain_steps: int = 200,
        teacher_patience: int = 0,
        teacher_lr: float | None = None,
        use_last_action: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec=spec, use_last_action=use_last_action, **kwargs)
        if return_conditioning not in ("episode_return", "return_to_go", "none"):
            raise ValueError(f"return_conditioning must be 'episode_return', 'return_to_go' or 'none', got {return_conditioning!r}")
        if teacher_inputs not in ("state", "joint_obs"):
            raise ValueError(f"teacher_inputs must be 'state' or 'joint_obs', got {teacher_inputs!r}")
        if return_scale is not None and return_scale <= 0:
            raise ValueError(f"return_scale must be > 0 or None, got {return_scale}")
        s = self.spec
        net = dict(
            embed_dim=embed_dim,
            n_layers=n_layers,
            n_heads=n_heads,
            context_length=context_length,
            max_timestep=s.episode_limit,
            use_return=return_conditioning != "none",
            dropout=dropout,
        )
        extra = s.state_dim if teacher_inputs == "state" else s.n_agents * s.obs_dim
        self.student = DecisionTransformer(self.agent_inputs.dim, s.n_actions, **net)
        self.teacher = DecisionTransformer(self.agent_inputs.dim + extra, s.n_actions, **net)
        use_relation = relation_coef > 0 and s.n_agents > 1
        self.mapping = (
            nn.Sequential(nn.Linear(embed_dim, 2 * embed_dim), nn.GELU(), nn.Linear(2 * embed_dim, embed_dim))
            if use_relation
            else None
        )
        # Statistics of the training data that act() needs; saved in checkpoints.
        self.register_buffer("return_scale_used", torch.tensor(float(return_scale or 0.0)))  # 0 = not yet set
        self.register_buffer("best_return", torch.tensor(-math.inf))

    # ---- capabilities and optimisers -------------------------------------------
    @property
    def requires_episodes(self) -> bool:
        return True  # token histories need whole episodes from t = 0

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hparams
        student = nn.ModuleList([self.student] + ([self.mapping] if self.mapping is not None else []))
        main = torch.optim.AdamW(adamw_param_groups(student, hp.weight_decay), lr=hp.lr, betas=(0.9, 0.95))
        teacher_lr = hp.lr if hp.teacher_lr is None else hp.teacher_lr
        teacher = torch.optim.AdamW(adamw_param_groups(self.teacher, hp.weight_decay), lr=teacher_lr, betas=(0.9, 0.95))
        return [main, teacher]

    # ---- inputs --------------------------------------------------------------
    def _scale(self) -> float:
        value = float(self.return_scale_used)
        return value if value > 0 else 1.0

    def return_tokens(self, batch: Batch) -> torch.Tensor | None:
        """[B, L] scaled return tokens of an episode batch (None without return conditioning).

        Also records the data statistics act() uses: the return scale (first
        batch, when not given) and the best episode return seen.
        """
        mask = batch["mask"]
        rtg = returns_to_go(batch["reward"], mask)
        episode_return = rtg[:, 0]
        with torch.no_grad():
            self.best_return.copy_(torch.maximum(self.best_return, episode_return.max()))
            if float(self.return_scale_used) <= 0:
                biggest = float(episode_return.abs().max())
                self.return_scale_used.fill_(biggest if biggest > 1e-6 else 1.0)
        mode = self.hparams.return_conditioning
        if mode == "none":
            return None
        tokens = rtg if mode == "return_to_go" else episode_return.unsqueeze(1).expand_as(rtg)
        return tokens / self._scale()

    def teacher_inputs(self, batch: Batch) -> torch.Tensor:
        """[B, L, N, in_T]: the student inputs plus the global state or all agents' observations."""
        x = self.sequence_inputs(batch, include_last_obs=False)
        b, steps, n, _ = x.shape
        if self.hparams.teacher_inputs == "state":
            extra = batch["state"][:, :steps]
        else:
            extra = batch["obs"][:, :steps].reshape(b, steps, -1)
        return torch.cat([x, extra.unsqueeze(2).expand(b, steps, n, extra.shape[-1])], dim=-1)

    @staticmethod
    def run_agents(
        net: DecisionTransformer, inputs: torch.Tensor, actions: torch.Tensor, returns: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Runs ``net`` on every agent's sequence: [B, L, N, in] -> logits [B, L, N, A], features [B, L, N, E]."""
        b, steps, n, _ = inputs.shape
        x = inputs.permute(0, 2, 1, 3).reshape(b * n, steps, -1)
        a = actions.permute(0, 2, 1).reshape(b * n, steps)
        t = torch.arange(steps, device=inputs.device).expand(b * n, steps)
        r = None if returns is None else returns.unsqueeze(1).expand(b, n, steps).reshape(b * n, steps)
        logits, feats = net(x, a, t, r)
        unflat = lambda y: y.reshape(b, n, steps, -1).permute(0, 2, 1, 3)  # noqa: E731
        return unflat(logits), unflat(feats)

    # ---- teacher pre-training (the base class's behaviour-model hooks) ---------
    def behaviour_pretrain_budget(self) -> tuple[int, int]:
        return self.hparams.teacher_pretrain_steps, self.hparams.teacher_patience

    def behaviour_update(self, batch: Batch) -> torch.Tensor:
        opt = self.raw_optimizer(1)  # secondary: does not advance global_step
        returns = self.return_tokens(batch)
        logits, _ = self.run_agents(self.teacher, self.teacher_inputs(batch), batch["actions"], returns)
        loss = bc_nll(logits, batch["actions"], ensure_some_available(batch["avail_actions"][:, :-1]), batch["mask"])
        opt.zero_grad()
        loss.backward()
        if self.hparams.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.teacher.parameters(), self.hparams.grad_clip_norm)
        opt.step()
        return loss.detach()

    # ---- distillation --------------------------------------------------------------
    def training_step(self, batch: Batch, batch_idx: int) -> None:
        hp = self.hparams
        mask, actions = batch["mask"], batch["actions"]
        avail = ensure_some_available(batch["avail_actions"][:, :-1])
        returns = self.return_tokens(batch)
        logits, feats = self.run_agents(self.student, self.sequence_inputs(batch, include_last_obs=False), actions, returns)
        with torch.no_grad():
            t_logits, t_feats = self.run_agents(self.teacher, self.teacher_inputs(batch), actions, returns)
        relation_coef = hp.relation_coef if self.mapping is not None else 0.0
        mapped = self.mapping(feats) if self.mapping is not None else None
        loss, parts = madtkd_loss(logits, t_logits, actions, avail, mask, hp.kd_coef, relation_coef, mapped, t_feats)
        self.optimise(self.main_optimizer(), loss, hp.grad_clip_norm)
        self.log_train({"loss": loss.detach(), **parts, "best_return": self.best_return.clone()})

    # ---- decentralised execution ------------------------------------------------------
    def _target_return(self) -> float:
        if self.hparams.target_return is not None:
            return float(self.hparams.target_return)
        best = float(self.best_return)
        return best if math.isfinite(best) else 0.0

    def observe_reward(self, hidden: dict[str, Any], reward: torch.Tensor) -> dict[str, Any]:
        """Return-to-go bookkeeping: subtract the team reward [B] just received from the
        return token of the next steps (only with ``return_conditioning="return_to_go"``)."""
        if self.hparams.return_conditioning != "return_to_go":
            return hidden
        reward = torch.as_tensor(reward, dtype=torch.float32, device=hidden["target"].device)
        return {**hidden, "target": hidden["target"] - reward}

    @torch.no_grad()
    def act(
        self, obs: torch.Tensor, avail: torch.Tensor, hidden: Any = None, deterministic: bool = True
    ) -> tuple[torch.Tensor, Any]:
        """Decentralised actions; ``hidden`` holds each agent's token history (see OfflineMARLModule.act)."""
        out_device = obs.device if isinstance(obs, torch.Tensor) else torch.device("cpu")
        obs = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        avail = ensure_some_available(torch.as_tensor(avail, device=self.device).bool())
        b, n = obs.shape[:2]
        a_dim = self.spec.n_actions
        if hidden is None:
            hidden = {
                "x": obs.new_zeros(b, n, 0, self.agent_inputs.dim),
                "ret": obs.new_zeros(b, n, 0),
                "a": torch.zeros(b, n, 0, dtype=torch.long, device=self.device),
                "t": 0,
                "target": obs.new_full((b,), self._target_return()),
                "last_action": obs.new_zeros(b, n, a_dim),
            }
        keep = self.student.history_steps
        x = torch.cat([hidden["x"], self.agent_inputs.build(obs, hidden["last_action"]).unsqueeze(2)], 2)[:, :, -keep:]
        ret_now = (hidden["target"] / self._scale()).view(b, 1, 1).expand(b, n, 1)
        ret = torch.cat([hidden["ret"], ret_now], 2)[:, :, -keep:]
        a = torch.cat([hidden["a"], hidden["a"].new_zeros(b, n, 1)], 2)[:, :, -keep:]  # placeholder for a_t
        steps, t = x.shape[2], hidden["t"]
        timesteps = torch.arange(t - steps + 1, t + 1, device=self.device).expand(b * n, steps)
        returns = ret.reshape(b * n, steps) if self.student.use_return else None
        logits, _ = self.student(x.reshape(b * n, steps, -1), a.reshape(b * n, steps), timesteps, returns)
        logits = logits[:, -1].reshape(b, n, a_dim).masked_fill(~avail, NEG_INF)
        if deterministic:
            actions = logits.argmax(-1)
        else:
            actions = torch.distributions.Categorical(logits=logits).sample()
        a = torch.cat([a[:, :, :-1], actions.unsqueeze(-1)], 2)
        new_hidden = {
            "x": x,
            "ret": ret,
            "a": a,
            "t": t + 1,
            "target": hidden["target"],
            "last_action": F.one_hot(actions, a_dim).float(),
        }
        return actions.to(out_device), new_hidden

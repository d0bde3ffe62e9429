"""Deliberately naive CFCQL / MACQL / BC updates, written the way pymarl-based code does them.

This is the slow reference of ``bench_overhead.py``, not library code. It
mirrors the structure of the official CFCQL learner (thu-rllab/CFCQL, built on
pymarl) with our loss definitions, so that the speed of the vectorised
modules in ``lit_omarl.algos`` can be compared with the same math done the
straightforward way:

* agents, target agents and the behaviour model are unrolled one time step at
  a time in Python through ``torch.nn.GRU`` (``fused = False``), the inputs of
  each step built on the fly (pymarl's ``mac.forward(batch, t)``); the
  behaviour model runs with autograd on;
* the counterfactual term loops over agents i and actions j and calls the
  FULL mixer (hypernetworks included) once per candidate: N * A extra mixer
  calls per update; MACQL calls it once per sampled joint action;
* TD(lambda) targets are a Python loop over time steps.

The values are the ones of our modules (``tests/test_naive_reference.py``
checks loss and gradients on a small batch): same TD(lambda) definition,
``NEG_INF`` masking, lambda weights and MACQL samples (the same uniform draws
from the same generator).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F

from lit_omarl.algos.losses import KL_EPS, NEG_INF

Batch = dict[str, torch.Tensor]


def _some_available(avail: torch.Tensor) -> torch.Tensor:
    return avail | ~avail.any(-1, keepdim=True)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def _reference(net: Any) -> Any:
    """A copied agent network that runs through ``torch.nn.GRU`` (not our fused GRU kernel)."""
    if net is not None and hasattr(net, "fused"):
        net.fused = False
    return net


def rollout(agent: torch.nn.Module, agent_inputs: Any, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """pymarl-style unroll: [B, T', N, out] from T' calls of ``agent.step``, inputs built per step."""
    n_actions = agent_inputs.n_actions
    hidden, outs = None, []
    for t in range(obs.shape[1]):
        if t == 0:
            last = torch.zeros(*obs.shape[:1], obs.shape[2], n_actions, dtype=obs.dtype)
        else:
            last = F.one_hot(actions[:, t - 1], n_actions).to(obs.dtype)
        out, hidden = agent.step(agent_inputs.build(obs[:, t], last), hidden)
        outs.append(out)
    return torch.stack(outs, dim=1)


def td_lambda_loop(reward, terminated, mask, target_qs, gamma, td_lambda) -> torch.Tensor:
    """TD(lambda) returns of ``lit_omarl.algos.losses.td_lambda_targets``, one Python step at a time."""
    steps = reward.shape[1]
    ret = torch.zeros_like(reward)
    carry = target_qs[:, steps]
    for t in reversed(range(steps)):
        g = reward[:, t] + gamma * (1 - terminated[:, t]) * ((1 - td_lambda) * target_qs[:, t + 1] + td_lambda * carry)
        ret[:, t] = g * mask[:, t]
        carry = torch.where(mask[:, t] > 0, g, target_qs[:, t])
    return ret


class NaiveQMIXLearner:
    """The QMIX part shared by the naive CFCQL and MACQL learners (works on copies of a module's nets)."""

    def __init__(self, model: Any) -> None:
        hp = model.hparams
        self.hp = hp
        self.inputs = model.agent_inputs
        self.agent = _reference(copy.deepcopy(model.agent))
        self.mixer = copy.deepcopy(model.mixer)
        self.target_agent = _reference(copy.deepcopy(model.target_agent))
        self.target_mixer = copy.deepcopy(model.target_mixer)
        self.params = list(self.agent.parameters()) + list(self.mixer.parameters())
        self.optimizer = torch.optim.Adam(self.params, lr=hp.lr)
        self.steps = 0

    def regulariser(self, q_all, q_taken, q_taken_tot, batch, avail, states) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        hp = self.hp
        obs, actions, state, mask = batch["obs"], batch["actions"], batch["state"], batch["mask"]
        avail = _some_available(batch["avail_actions"])
        q_all = rollout(self.agent, self.inputs, obs, actions)  # [B, L+1, N, A]
        with torch.no_grad():
            target_q = rollout(self.target_agent, self.inputs, obs, actions)
            greedy = q_all.detach().masked_fill(~avail, -math.inf).argmax(-1, keepdim=True)
            target_tot = self.target_mixer(target_q.gather(-1, greedy).squeeze(-1), state)
            targets = td_lambda_loop(batch["reward"], batch["terminated"], mask, target_tot, hp.gamma, hp.td_lambda)
        q_all = q_all[:, :-1]
        q_taken = q_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)  # [B, L, N]
        q_taken_tot = self.mixer(q_taken, state[:, :-1])
        gap, extra = self.regulariser(q_all, q_taken, q_taken_tot, batch, avail[:, :-1], state[:, :-1])
        cql = _masked_mean(gap, mask)
        td = _masked_mean(0.5 * (q_taken_tot - targets) ** 2, mask)
        return hp.cql_alpha * cql + td, {"cql_gap": cql.detach(), "td_loss": td.detach(), **extra}

    def update(self, batch: Batch) -> float:
        loss, _ = self.loss(batch)
        self.optimizer.zero_grad()
        loss.backward()
        if self.hp.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.hp.grad_clip_norm)
        self.optimizer.step()
        self.steps += 1
        if self.steps % self.hp.target_update_interval == 0:
            self.target_agent.load_state_dict(self.agent.state_dict())
            self.target_mixer.load_state_dict(self.mixer.state_dict())
        return float(loss.detach())


class NaiveCFCQL(NaiveQMIXLearner):
    """Counterfactual term with one full mixer call per (agent, action) candidate."""

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self.behaviour = _reference(copy.deepcopy(model.behaviour))

    def regulariser(self, q_all, q_taken, q_taken_tot, batch, avail, states):
        hp = self.hp
        n_agents, n_actions = q_all.shape[-2:]
        negs, cands = [], []
        for i in range(n_agents):
            per_action = []
            for j in range(n_actions):
                qs = torch.cat([q_taken[..., :i], q_all[..., i, j : j + 1], q_taken[..., i + 1 :]], dim=-1)
                per_action.append(self.mixer(qs, states))  # hypernetworks recomputed every time
            cand = torch.stack(per_action, dim=-1).masked_fill(~avail[..., i, :], NEG_INF)  # [B, L, A]
            negs.append(torch.logsumexp(cand, dim=-1))
            cands.append(cand)
        neg = torch.stack(negs, dim=-1)  # [B, L, N]
        extra = {}
        if self.behaviour is None:
            lam = torch.full_like(neg, 1.0 / n_agents)
        else:
            # as in the official learner: the behaviour model runs with autograd on
            logits = rollout(self.behaviour, self.inputs, batch["obs"][:, :-1], batch["actions"])
            with torch.no_grad():
                ratios = []
                for i in range(n_agents):
                    a_i = avail[..., i, :]
                    beta = torch.softmax(logits[..., i, :].masked_fill(~a_i, NEG_INF), dim=-1) * a_i
                    mu = torch.softmax(cands[i], dim=-1)
                    kl = (mu + KL_EPS) * (torch.log(mu + KL_EPS) - torch.log(beta + KL_EPS))
                    ratios.append((kl * a_i).sum(-1))
                ratio = torch.stack(ratios, dim=-1)
                if hp.lambda_mode == "uniform":
                    lam = torch.full_like(ratio, 1.0 / n_agents)
                elif hp.lambda_mode == "onehot":
                    lam = F.one_hot(ratio.argmax(-1), n_agents).to(ratio.dtype)
                else:
                    lam = torch.softmax(hp.softmax_temp * ratio, dim=-1)
        return (lam * neg).sum(-1) - q_taken_tot, extra


class NaiveMACQL(NaiveQMIXLearner):
    """Logsumexp over K sampled joint actions, one full mixer call per sample."""

    def __init__(self, model: Any, generator: torch.Generator | None = None) -> None:
        super().__init__(model)
        self.generator = generator or torch.Generator().manual_seed(int(model.hparams.seed))

    def regulariser(self, q_all, q_taken, q_taken_tot, batch, avail, states):
        k = self.hp.n_samples
        u = torch.rand((*avail.shape[:-2], k, *avail.shape[-2:]), generator=self.generator)  # [B, L, K, N, A]
        samples = u.masked_fill(~avail.unsqueeze(-3), -1.0).argmax(-1)  # [B, L, K, N]
        values = []
        for s in range(k):
            qs = q_all.gather(-1, samples[..., s, :].unsqueeze(-1)).squeeze(-1)  # [B, L, N]
            values.append(self.mixer(qs, states))
        return torch.logsumexp(torch.stack(values, dim=-1), dim=-1) - q_taken_tot, {}


class NaiveBC:
    """Behaviour cloning with a per-step unroll and a per-step masked log-softmax."""

    def __init__(self, model: Any) -> None:
        self.hp = model.hparams
        self.inputs = model.agent_inputs
        self.policy = _reference(copy.deepcopy(model.policy))
        self.params = list(self.policy.parameters())
        self.optimizer = torch.optim.Adam(self.params, lr=self.hp.lr)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict]:
        logits = rollout(self.policy, self.inputs, batch["obs"][:, :-1], batch["actions"])
        avail = _some_available(batch["avail_actions"][:, :-1])
        nll = []
        for t in range(logits.shape[1]):
            logp = torch.log_softmax(logits[:, t].masked_fill(~avail[:, t], NEG_INF), dim=-1)
            nll.append(-logp.gather(-1, batch["actions"][:, t].unsqueeze(-1)).squeeze(-1))  # [B, N]
        nll = torch.stack(nll, dim=1)
        mask = batch["mask"].unsqueeze(-1).expand_as(nll)
        return _masked_mean(nll, mask), {}

    def update(self, batch: Batch) -> float:
        loss, _ = self.loss(batch)
        self.optimizer.zero_grad()
        loss.backward()
        if self.hp.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.hp.grad_clip_norm)
        self.optimizer.step()
        return float(loss.detach())


def naive_learner(model: Any, **kwargs: Any) -> NaiveQMIXLearner | NaiveBC:
    """The naive counterpart of a CFCQL, MACQL or BC module (copies of its networks)."""
    from lit_omarl.algos import BC, CFCQL, MACQL

    if isinstance(model, CFCQL):
        return NaiveCFCQL(model)
    if isinstance(model, MACQL):
        return NaiveMACQL(model, **kwargs)
    if isinstance(model, BC):
        return NaiveBC(model)
    raise TypeError(f"no naive reference for {type(model).__name__}")

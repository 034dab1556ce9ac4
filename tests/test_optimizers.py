"""Optimizers: the C update (OptimizerState.step, built through each Python class's
_make_state) against Keras 3's rules in float64, variable by variable, under every kernel
set; live settings; validation; serialization; and their use in fit()."""
import importlib
import json
import re

import numpy as np
import pytest

import fastnn
from fastnn import _engine, optimizers
from fastnn.optimizers import schedules


def f32(x):
    """A hyper-parameter as the engine holds it (float32, as Keras does)."""
    return float(np.float32(x))


# ---- the reference: Keras 3's apply(), in float64 -------------------------------------------

class KerasRef:
    """Keras 3's BaseOptimizer.apply for a list of variables, in float64: learning rate
    at `iterations` (a schedule evaluated before counting the step), gradient clipping,
    decoupled weight decay, then the kind's update_step per variable. `config` is an
    optimizer's get_config(); tests may change it between steps (live settings)."""

    def __init__(self, kind, config, sizes, decay_mask=None, schedule=None):
        self.kind, self.config, self.schedule = kind, dict(config), schedule
        self.decay_mask = decay_mask or [True] * len(sizes)
        self.slots = [dict() for _ in sizes]
        self.iterations = 0
        self.u_product = 1.0  # Nadam
        if kind == "adagrad":
            for s, n in zip(self.slots, sizes):
                s["acc"] = np.full(n, f32(config["initial_accumulator_value"]))

    def h(self, name):
        value = self.config[name]
        return value if isinstance(value, bool) else f32(value)

    def clip(self, grads):
        c = self.config
        if c["clipnorm"]:
            t = f32(c["clipnorm"])
            return [g * t / max(np.sqrt(np.sum(g * g)), t) for g in grads]
        if c["global_clipnorm"]:
            t = f32(c["global_clipnorm"])
            norm = np.sqrt(sum(np.sum(g * g) for g in grads))
            return [g * t * min(1.0 / norm, 1.0 / t) for g in grads]
        if c["clipvalue"]:
            t = f32(c["clipvalue"])
            return [np.clip(g, -t, t) for g in grads]
        return grads

    def step(self, ws, grads):
        t = self.iterations
        lr = f32(self.schedule(t)) if self.schedule else f32(self.config["learning_rate"])
        grads = self.clip([np.asarray(g, np.float64) for g in grads])
        ws = [np.asarray(w, np.float64) for w in ws]
        if self.config["weight_decay"]:
            wd = f32(self.config["weight_decay"])
            ws = [w - w * wd * lr if use else w for w, use in zip(ws, self.decay_mask)]
        if self.kind == "nadam":
            self.u_product *= self.h("beta_1") * (1 - 0.5 * 0.96 ** (t + 1))
        out = [self.update(w, g, s, t + 1, lr) for w, g, s in zip(ws, grads, self.slots)]
        self.iterations += 1
        return out

    def update(self, w, g, s, t, lr):
        zeros = np.zeros_like(w)
        for name in ("m", "v", "a", "vh", "u"):
            s.setdefault(name, zeros.copy())
        h = self.h
        if self.kind == "sgd":
            mom = h("momentum")
            if mom == 0:
                return w - lr * g
            s["v"] = mom * s["v"] - lr * g
            return w + (mom * s["v"] - lr * g if h("nesterov") else s["v"])
        if self.kind == "rmsprop":
            rho, eps, mom = h("rho"), h("epsilon"), h("momentum")
            s["v"] = rho * s["v"] + (1 - rho) * g * g
            if h("centered"):
                s["a"] = rho * s["a"] + (1 - rho) * g
                denominator = s["v"] - s["a"] ** 2 + eps
            else:
                denominator = s["v"] + eps
            increment = lr * g / np.sqrt(denominator)
            if mom > 0:
                s["m"] = mom * s["m"] + increment
                return w - s["m"]
            return w - increment
        if self.kind in ("adam", "adamw"):
            b1, b2, eps = h("beta_1"), h("beta_2"), h("epsilon")
            alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            s["m"] = s["m"] + (g - s["m"]) * (1 - b1)
            s["v"] = s["v"] + (g * g - s["v"]) * (1 - b2)
            v = s["v"]
            if h("amsgrad"):
                s["vh"] = np.maximum(s["vh"], v)
                v = s["vh"]
            return w - s["m"] * alpha / (np.sqrt(v) + eps)
        if self.kind == "adagrad":
            s["acc"] = s["acc"] + g * g
            return w - lr * g / np.sqrt(s["acc"] + h("epsilon"))
        if self.kind == "adamax":
            b1, b2, eps = h("beta_1"), h("beta_2"), h("epsilon")
            s["m"] = s["m"] + (g - s["m"]) * (1 - b1)
            s["u"] = np.maximum(b2 * s["u"], np.abs(g))
            return w - lr * s["m"] / ((1 - b1 ** t) * (s["u"] + eps))
        if self.kind == "nadam":
            b1, b2, eps = h("beta_1"), h("beta_2"), h("epsilon")
            u_t = b1 * (1 - 0.5 * 0.96 ** t)
            u_next = b1 * (1 - 0.5 * 0.96 ** (t + 1))
            s["m"] = s["m"] + (g - s["m"]) * (1 - b1)
            s["v"] = s["v"] + (g * g - s["v"]) * (1 - b2)
            m_hat = u_next * s["m"] / (1 - self.u_product * u_next) + (1 - u_t) * g / (
                1 - self.u_product)
            v_hat = s["v"] / (1 - b2 ** t)
            return w - m_hat * lr / (np.sqrt(v_hat) + eps)
        raise ValueError(self.kind)


NAMES = {"sgd": optimizers.SGD, "rmsprop": optimizers.RMSprop, "adam": optimizers.Adam,
         "adamw": optimizers.AdamW, "adagrad": optimizers.Adagrad,
         "adamax": optimizers.Adamax, "nadam": optimizers.Nadam}


VARIABLES = [("dense/kernel", 5), ("dense/bias", 1), ("dense_1/kernel", 37),
             ("dense_1/bias", 300)]
# per-variable gradient scales: norms ~0.2, ~3, ~6 and ~0.9, so clipnorm=1 clips two of four
SCALES = [0.1, 3.0, 1.0, 0.05]


def layout(variables=VARIABLES):
    out, at = [], 0
    for name, size in variables:
        out.append((name, at, size))
        at += size
    return out


def split(flat, variables=VARIABLES):
    out, at = [], 0
    for _, size in variables:
        out.append(flat[at:at + size])
        at += size
    return out


class Pair:
    """An optimizer's C state and the float64 reference, stepped on the same gradients."""

    def __init__(self, opt, rng, variables=VARIABLES, decay_mask=None):
        self.opt, self.rng, self.variables = opt, rng, variables
        self.state = opt._make_state(layout(variables))
        lr = opt._learning_rate
        schedule = lr if isinstance(lr, schedules.LearningRateSchedule) else None
        self.ref = KerasRef(type(opt).__name__.lower(), opt.get_config(),
                            [n for _, n in variables], decay_mask, schedule)
        self.w = rng.standard_normal(sum(n for _, n in variables)).astype(np.float32)
        self.w_ref = split(self.w.astype(np.float64), variables)

    def gradient(self):
        return np.concatenate([self.rng.standard_normal(n) * s
                               for (_, n), s in zip(self.variables, SCALES)]).astype(np.float32)

    def step(self, g=None, rtol=2e-5, atol=2e-6):
        g = self.gradient() if g is None else g
        self.w_ref = self.ref.step(self.w_ref, split(g, self.variables))
        self.state.step(self.w, g.copy())
        np.testing.assert_allclose(self.w, np.concatenate(self.w_ref), rtol=rtol, atol=atol,
                                   err_msg=f"after step {self.ref.iterations}")

    def sync(self, **settings):
        """Changes settings on the optimizer (live) and in the reference alike."""
        for k, v in settings.items():
            setattr(self.opt, k, v)
            self.ref.config[k] = v


EXP = schedules.ExponentialDecay(0.05, decay_steps=7, decay_rate=0.5)
COSINE = schedules.CosineDecay(0.0, 30, alpha=0.1, warmup_target=0.05, warmup_steps=10)

CASES = [
    (optimizers.SGD, dict(learning_rate=0.1)),
    (optimizers.SGD, dict(learning_rate=0.05, momentum=0.9)),
    (optimizers.SGD, dict(learning_rate=0.05, momentum=0.9, nesterov=True)),
    (optimizers.SGD, dict(learning_rate=0.1, clipnorm=1.0)),
    (optimizers.SGD, dict(learning_rate=0.1, momentum=0.5, clipvalue=0.5)),
    (optimizers.SGD, dict(learning_rate=0.1, global_clipnorm=2.0)),
    (optimizers.SGD, dict(learning_rate=EXP, momentum=0.8, weight_decay=0.1)),
    (optimizers.RMSprop, dict(learning_rate=0.01)),
    (optimizers.RMSprop, dict(learning_rate=0.05, rho=0.5, epsilon=1e-3)),
    (optimizers.RMSprop, dict(learning_rate=0.01, momentum=0.9)),
    (optimizers.RMSprop, dict(learning_rate=0.01, centered=True)),
    (optimizers.RMSprop, dict(learning_rate=0.01, momentum=0.5, centered=True, clipnorm=1.0)),
    (optimizers.RMSprop, dict(learning_rate=COSINE, weight_decay=0.05, global_clipnorm=1.0)),
    (optimizers.Adam, dict(learning_rate=0.01)),
    (optimizers.Adam, dict(learning_rate=0.1, beta_1=0.5, beta_2=0.8, epsilon=0.3)),
    (optimizers.Adam, dict(learning_rate=0.01, amsgrad=True, clipvalue=0.3)),
    (optimizers.AdamW, dict(learning_rate=0.01)),
    (optimizers.AdamW, dict(learning_rate=EXP, weight_decay=0.5, amsgrad=True, clipnorm=1.0)),
    (optimizers.Adagrad, dict(learning_rate=0.1)),
    (optimizers.Adagrad, dict(learning_rate=0.1, initial_accumulator_value=0.5, epsilon=1e-3,
                              global_clipnorm=1.5)),
    (optimizers.Adamax, dict(learning_rate=0.01)),
    (optimizers.Adamax, dict(learning_rate=COSINE, beta_1=0.7, beta_2=0.9, clipnorm=1.0)),
    (optimizers.Nadam, dict(learning_rate=0.01)),
    (optimizers.Nadam, dict(learning_rate=0.02, beta_1=0.8, beta_2=0.95, weight_decay=0.01,
                            clipvalue=1.0)),
]


def _case_id(case):
    cls, kwargs = case
    return cls.__name__ + "-" + "-".join(
        f"{k}={type(v).__name__ if isinstance(v, schedules.LearningRateSchedule) else v}"
        for k, v in kwargs.items())


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_update_matches_keras_rule(rng, kernels, case):
    """50 steps over four variables of different sizes (odd tails for every vector width),
    with random gradients, vs Keras' rule in float64."""
    cls, kwargs = case
    pair = Pair(cls(**kwargs), rng)
    for step in range(50):
        g = pair.gradient()
        if step == 20:
            g[::3] *= 1e-4  # small gradients, where epsilon matters
        pair.step(g)
    assert pair.opt.iterations == pair.state.iterations == 50


# every rule with a SIMD kernel (csrc/optimizers.c: AVX2 8 lanes, AVX-512 16)
SIMD_CASES = [
    (optimizers.RMSprop, dict(learning_rate=0.01)),
    (optimizers.RMSprop, dict(learning_rate=0.01, momentum=0.9)),
    (optimizers.RMSprop, dict(learning_rate=0.01, centered=True)),
    (optimizers.RMSprop, dict(learning_rate=0.01, momentum=0.5, centered=True)),
    (optimizers.Adam, dict(learning_rate=0.01)),
    (optimizers.Adam, dict(learning_rate=0.01, amsgrad=True)),
    (optimizers.AdamW, dict(learning_rate=0.01, weight_decay=0.1)),
    (optimizers.Nadam, dict(learning_rate=0.01)),
    (optimizers.Adamax, dict(learning_rate=0.01)),
    (optimizers.Adagrad, dict(learning_rate=0.1)),
]


# tails of 1 to 15 values: of AVX2's 8 lanes 1, 7, 4, 6 and 3 (its 4-, 2- and 1-value
# stores alone and together), of AVX-512's 16 lanes 1, 7, 12, 15, 6 and 11
TAIL_LENGTHS = [1, 7, 12, 15, 17, 22, 33, 1003]


@pytest.mark.parametrize("n", TAIL_LENGTHS)
@pytest.mark.parametrize("case", SIMD_CASES, ids=[_case_id(c) for c in SIMD_CASES])
def test_vector_tails_match_keras_rule_and_stay_in_bounds(rng, kernels, case, n):
    """Lengths below, around and past the vector widths, so that the masked tail holds
    1 to 15 values: 30 steps vs Keras' rule in float64. The state is longer than w, and w
    and g are prefixes of larger buffers (g non-zero past n): what lies past n, in w's
    buffer and in every slot, must stay as it was."""
    cls, kwargs = case
    opt, pad = cls(**kwargs), 16
    state = opt._make_state(n + pad)
    ref = KerasRef(type(opt).__name__.lower(), opt.get_config(), [n])
    slots = [s.copy() for s in state.slots]
    buf = rng.standard_normal(n + pad).astype(np.float32)
    w, guard = buf[:n], buf[n:].copy()
    w_ref = [w.astype(np.float64)]
    for step in range(30):
        g_buf = (rng.standard_normal(n + pad) * 0.3).astype(np.float32)
        g = g_buf[:n]
        if step == 10:
            g[::3] *= 1e-4  # small gradients, where epsilon matters
        w_ref = ref.step(w_ref, [g])
        state.step(w, g)
        np.testing.assert_allclose(w, w_ref[0], rtol=2e-5, atol=2e-6,
                                   err_msg=f"after step {step + 1}")
    np.testing.assert_array_equal(buf[n:], guard)
    for before, after in zip(slots, state.slots):
        np.testing.assert_array_equal(after[n:], before[n:])
        assert np.all(np.isfinite(after[:n]))


def test_adamw_exclude_from_weight_decay_by_name(rng, kernels):
    opt = optimizers.AdamW(learning_rate=0.01, weight_decay=0.3)
    opt.exclude_from_weight_decay(var_names=["bias"])
    pair = Pair(opt, rng, decay_mask=[True, False, True, False])
    assert pair.state.decay_mask == (True, False, True, False)
    for _ in range(20):
        pair.step()


def test_exclude_from_weight_decay_by_var_list_and_live(rng):
    opt = optimizers.SGD(learning_rate=0.1, weight_decay=0.5)
    pair = Pair(opt, rng)
    for _ in range(3):
        pair.step()
    # after the state exists (Keras allows it only before build): takes effect next step
    opt.exclude_from_weight_decay(var_list=["dense/kernel", "dense_1/bias"])
    pair.ref.decay_mask = [False, True, True, False]
    assert pair.state.decay_mask == (False, True, True, False)
    for _ in range(3):
        pair.step()
    opt.exclude_from_weight_decay()  # nothing excluded again
    pair.ref.decay_mask = [True] * 4
    for _ in range(3):
        pair.step()


def test_weight_decay_applies_before_the_update_with_the_same_rate():
    # SGD with a zero gradient: only decay acts, w -= w * wd * lr each step
    opt = optimizers.SGD(learning_rate=0.1, weight_decay=0.5)
    state = opt._make_state(3)
    w = np.array([1.0, -2.0, 4.0], np.float32)
    state.step(w, np.zeros(3, np.float32))
    np.testing.assert_allclose(w, [0.95, -1.9, 3.8], rtol=1e-6)


def test_clipnorm_is_per_variable_and_global_clipnorm_over_all():
    g = np.array([3.0, 4.0, 0.3, 0.4], np.float32)  # norms 5 and 0.5; together ~5.02
    variables = [("a", 0, 2), ("b", 2, 2)]
    w = np.zeros(4, np.float32)
    optimizers.SGD(learning_rate=1.0, clipnorm=1.0)._make_state(variables).step(w, g.copy())
    np.testing.assert_allclose(w, [-0.6, -0.8, -0.3, -0.4], rtol=1e-6)
    w = np.zeros(4, np.float32)
    optimizers.SGD(learning_rate=1.0, global_clipnorm=1.0)._make_state(variables).step(w, g.copy())
    np.testing.assert_allclose(w, -g / np.linalg.norm(g.astype(np.float64)), rtol=1e-6)
    w = np.zeros(4, np.float32)
    optimizers.SGD(learning_rate=1.0, clipvalue=0.35)._make_state(variables).step(w, g.copy())
    np.testing.assert_allclose(w, [-0.35, -0.35, -0.3, -0.35], rtol=1e-6)


def test_global_clipnorm_of_non_finite_gradients_gives_nan():
    w = np.zeros(3, np.float32)
    optimizers.SGD(global_clipnorm=1.0)._make_state(3).step(
        w, np.array([np.inf, 1.0, 0.0], np.float32))
    assert np.all(np.isnan(w))


# ---- live settings: each takes effect at the next step ----------------------------------------

def test_learning_rate_change_between_steps(rng, kernels):
    pair = Pair(optimizers.Adam(learning_rate=0.01), rng)
    for lr in (0.01, 0.1, 0.001, 0.05):
        pair.sync(learning_rate=lr)
        assert pair.state.learning_rate == f32(lr)
        pair.step()
        pair.step()


@pytest.mark.parametrize("cls", list(NAMES.values()))
def test_learning_rate_zero_leaves_weights_unchanged(rng, cls):
    opt = cls(learning_rate=0.1)
    state = opt._make_state(layout())
    w = rng.standard_normal(state.size).astype(np.float32)
    state.step(w, rng.standard_normal(state.size).astype(np.float32))
    opt.learning_rate = 0.0
    before = w.copy()
    for _ in range(3):
        state.step(w, rng.standard_normal(state.size).astype(np.float32))
    np.testing.assert_array_equal(w, before)


@pytest.mark.parametrize("cls,changes", [
    (optimizers.SGD, [dict(momentum=0.9), dict(nesterov=True), dict(momentum=0.0)]),
    (optimizers.RMSprop, [dict(rho=0.5), dict(momentum=0.8), dict(centered=True),
                          dict(epsilon=1e-2), dict(momentum=0.0)]),
    (optimizers.Adam, [dict(beta_1=0.5), dict(amsgrad=True), dict(beta_2=0.9),
                       dict(epsilon=1e-3)]),
    (optimizers.Adamax, [dict(beta_1=0.5), dict(beta_2=0.5)]),
    (optimizers.Nadam, [dict(beta_2=0.9), dict(epsilon=0.1)]),
    (optimizers.Adagrad, [dict(epsilon=0.5)]),
    (optimizers.AdamW, [dict(weight_decay=0.5), dict(weight_decay=0.0)]),
    (optimizers.SGD, [dict(clipnorm=1.0), dict(clipnorm=None, clipvalue=0.2),
                      dict(clipvalue=None, global_clipnorm=0.5), dict(global_clipnorm=None),
                      dict(weight_decay=0.3), dict(weight_decay=None)]),
])
def test_hyper_parameter_changes_take_effect_at_the_next_step(rng, kernels, cls, changes):
    pair = Pair(cls(learning_rate=0.02), rng)
    for settings in changes:
        pair.step()
        pair.sync(**settings)
        for name, value in settings.items():
            assert getattr(pair.opt, name) == value
        pair.step()
        pair.step()


def test_schedule_set_live_and_iterations_settable(rng):
    pair = Pair(optimizers.SGD(learning_rate=0.1), rng)
    pair.step()
    pair.opt.learning_rate = EXP
    pair.ref.schedule = EXP
    for _ in range(10):
        pair.step()
    assert pair.opt.learning_rate == EXP(11)
    # iterations moves the schedule (and the bias corrections) along
    pair.opt.iterations = 100
    pair.ref.iterations = 100
    assert pair.opt.learning_rate == EXP(100)
    pair.step()
    assert pair.opt.iterations == 101


def test_learning_rate_of_a_scheduled_optimizer_is_not_settable_to_a_float():
    opt = optimizers.SGD(learning_rate=EXP)
    with pytest.raises(TypeError, match="created with a `LearningRateSchedule`"):
        opt.learning_rate = 0.1
    assert opt.learning_rate == EXP(0)


def test_iterations_counts_and_carries_into_a_new_state(rng):
    opt = optimizers.Adam()
    assert opt.iterations == 0
    opt.iterations = 5
    state = opt._make_state(4)
    assert state.iterations == 5
    state.step(np.ones(4, np.float32), np.ones(4, np.float32))
    assert opt.iterations == 6
    assert opt._make_state(4).iterations == 6  # fresh slots, the count goes on (as Keras)


def test_setting_on_a_state_used_by_a_running_engine_is_a_struct_write():
    # the engine reads &state.opt at every step: the Python attribute must land there
    opt = optimizers.RMSprop()
    state = opt._make_state(3)
    opt.rho, opt.epsilon, opt.learning_rate = 0.5, 0.25, 0.125
    assert (state.rho, state.epsilon, state.learning_rate) == (0.5, 0.25, 0.125)


# ---- the state itself ---------------------------------------------------------------------------

def test_make_state_takes_an_int_or_a_layout():
    state = optimizers.SGD()._make_state(7)
    assert state.variables == (("all", 0, 7),)
    assert state.size == 7
    state = optimizers.Adam()._make_state(layout())
    assert state.variables == tuple(layout())
    assert len(state.slots) == 3 and all(s.shape == (343,) for s in state.slots)
    assert optimizers.Adam()._make_state(0).size == 0


@pytest.mark.parametrize("variables,match", [
    ([("a", 1, 3)], r"'a' has offset 1 and size 3 where offset 0 was expected"),
    ([("a", 0, 3), ("b", 4, 1)], r"'b' has offset 4 and size 1 where offset 3 was expected"),
    ([("a", 0, -1)], r"'a' has offset 0 and size -1"),
])
def test_make_state_rejects_a_layout_with_gaps(variables, match):
    with pytest.raises(ValueError, match=match):
        optimizers.SGD()._make_state(variables)


def test_state_stored_on_the_optimizer():
    opt = optimizers.RMSprop()
    state = opt._make_state(5)
    assert opt._state is state
    assert isinstance(state, _engine.OptimizerState)


def test_rmsprop_epsilon_is_inside_the_root():
    """Keras: w -= lr*g/sqrt(v + eps); PyTorch: w -= lr*g/(sqrt(v) + eps). With a large
    epsilon the two differ by far more than rounding."""
    lr, rho, eps = 0.1, 0.9, 1.0
    g = np.full(4, 0.5, np.float32)
    w = np.zeros(4, np.float32)
    _engine.OptimizerState("rmsprop", 4, learning_rate=lr, rho=rho, epsilon=eps).step(w, g)
    v = (1 - rho) * 0.25
    inside = -lr * 0.5 / np.sqrt(v + eps)
    outside = -lr * 0.5 / (np.sqrt(v) + eps)
    np.testing.assert_allclose(w, inside, rtol=1e-6)
    assert abs(inside - outside) > 1e-3


def test_adam_bias_correction_first_step(rng):
    # at t = 1, m/(1-b1) = g and sqrt(v/(1-b2)) = |g|: the step is about lr * sign(g)
    g = rng.standard_normal(50).astype(np.float32)
    w = np.zeros(50, np.float32)
    _engine.OptimizerState("adam", 50, learning_rate=0.01).step(w, g)
    np.testing.assert_allclose(w, -0.01 * np.sign(g), rtol=1e-3)


def test_state_reset_restores_start_values():
    state = optimizers.Adagrad(initial_accumulator_value=0.25)._make_state(6)
    np.testing.assert_array_equal(state.slot1, 0.25)
    state.step(np.ones(6, np.float32), np.ones(6, np.float32))
    assert state.iterations == 1 and np.all(state.slot1 == 1.25)
    state.reset()
    assert state.iterations == 0
    np.testing.assert_array_equal(state.slot1, 0.25)


def test_optimizer_state_accepts_a_prefix_of_its_slots():
    state = _engine.OptimizerState("rmsprop", 10, learning_rate=0.01)
    w = np.ones(4, np.float32)
    state.step(w, np.ones(4, np.float32))
    assert np.all(w < 1.0)
    np.testing.assert_array_equal(state.slot1[4:], 0.0)


def test_optimizer_state_errors():
    with pytest.raises(ValueError, match=r"unknown optimizer 'lion'; valid: \['adagrad', "
                                         r"'adam', 'adamax', 'nadam', 'rmsprop', 'sgd'\]"):
        _engine.OptimizerState("lion", 3, learning_rate=0.1)
    with pytest.raises(TypeError, match=r"OptimizerState has no setting 'beta_3'"):
        _engine.OptimizerState("adam", 3, learning_rate=0.1, beta_3=0.5)
    state = _engine.OptimizerState("sgd", 10, learning_rate=0.1)
    with pytest.raises(ValueError, match=r"w has 11 values, the state holds 10"):
        state.step(np.ones(11, np.float32), np.ones(11, np.float32))
    with pytest.raises(ValueError, match=r"g must have shape \(5,\), got \(4,\)"):
        state.step(np.ones(5, np.float32), np.ones(4, np.float32))
    with pytest.raises(TypeError, match=r"w must be float32, got dtype float64"):
        state.step(np.ones(5), np.ones(5, np.float32))
    with pytest.raises(TypeError, match=r"g must be float32, got dtype float64"):
        state.step(np.ones(5, np.float32), np.ones(5))
    with pytest.raises(ValueError, match=r"w must be C-contiguous"):
        state.step(np.ones(10, np.float32)[::2], np.ones(5, np.float32))
    with pytest.raises(ValueError, match=r"w must be 1-D, got shape \(2, 2\)"):
        state.step(np.ones((2, 2), np.float32), np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"mask must have one entry per variable \(1\), got 2"):
        state.set_decay_mask([True, False])


def test_optimizer_flushes_subnormals_and_restores_the_callers_mode():
    # Mean squares of dead units decay through the subnormal range, where each float
    # operation is ~100x slower; the engine runs with flush-to-zero (as TF does).
    n = 64
    state = _engine.OptimizerState("rmsprop", n, learning_rate=1e-3, rho=0.5)
    state.slot1[:] = np.float32(1e-38)  # normal, but rho * v is subnormal
    w = np.ones(n, np.float32)
    state.step(w, np.zeros(n, np.float32))
    assert np.all(state.slot1 == 0.0), "rho*v should flush to zero, not stay subnormal"
    np.testing.assert_array_equal(w, 1.0)
    # the caller's floating-point mode is restored: NumPy still makes subnormals
    tiny = np.float32(1e-38) * np.float32(0.5)
    assert 0.0 < tiny < np.finfo(np.float32).tiny


# ---- the Python classes: defaults, names, validation ----------------------------------------------

def test_defaults_follow_keras():
    sgd = optimizers.SGD()
    assert (sgd.learning_rate, sgd.momentum, sgd.nesterov, sgd.name) == (0.01, 0.0, False, "SGD")
    rms = optimizers.RMSprop()
    assert (rms.learning_rate, rms.rho, rms.momentum, rms.epsilon, rms.centered, rms.name) == \
        (0.001, 0.9, 0.0, 1e-7, False, "rmsprop")
    for cls, name in ((optimizers.Adam, "adam"), (optimizers.AdamW, "adamw")):
        adam = cls()
        assert (adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon, adam.amsgrad,
                adam.name) == (0.001, 0.9, 0.999, 1e-7, False, name)
    assert optimizers.AdamW().weight_decay == 0.004
    assert optimizers.Adam().weight_decay is None
    ada = optimizers.Adagrad()
    assert (ada.learning_rate, ada.initial_accumulator_value, ada.epsilon) == (0.001, 0.1, 1e-7)
    for cls in (optimizers.Adamax, optimizers.Nadam):
        o = cls()
        assert (o.learning_rate, o.beta_1, o.beta_2, o.epsilon) == (0.001, 0.9, 0.999, 1e-7)
    for cls in (optimizers.SGD, optimizers.Adam, optimizers.Nadam):
        o = cls()
        assert (o.clipnorm, o.clipvalue, o.global_clipnorm) == (None, None, None)


@pytest.mark.parametrize("name", sorted(NAMES) + ["SGD", "RMSprop", "Adam", "AdamW", "Nadam"])
def test_get_by_name(name):
    opt = optimizers.get(name)
    assert type(opt) is NAMES[name.lower()]
    assert optimizers.get(opt) is opt


@pytest.mark.parametrize("identifier", ["lion", "", "rms_prop", 3, None])
def test_get_unknown_lists_valid_names(identifier):
    with pytest.raises(ValueError, match=r"Unknown optimizer: .*Valid names: \['adagrad', "
                                         r"'adam', 'adamax', 'adamw', 'nadam', 'rmsprop', "
                                         r"'sgd'\]"):
        optimizers.get(identifier)


@pytest.mark.parametrize("cls", list(NAMES.values()))
@pytest.mark.parametrize("lr", [-0.1, -1, True, "0.1", None, float("nan"), float("inf"), 1e39])
def test_learning_rate_must_be_a_non_negative_number_or_a_schedule(cls, lr):
    with pytest.raises(ValueError, match=r"learning_rate must be a finite non-negative number "
                                         r"or a schedule from fastnn.optimizers.schedules. "
                                         + re.escape(f"Received: learning_rate={lr!r}")):
        cls(learning_rate=lr)
    opt = cls()
    with pytest.raises(ValueError, match=r"Received: learning_rate="):
        opt.learning_rate = lr


def test_learning_rate_zero_is_allowed():
    assert optimizers.SGD(learning_rate=0).learning_rate == 0


def test_custom_python_schedules_are_refused():
    class Halving(schedules.LearningRateSchedule):
        def __call__(self, step):
            return 0.1 / (step + 1)

    with pytest.raises(NotImplementedError, match="cannot be evaluated by fastnn's engine"):
        optimizers.SGD(learning_rate=Halving())
    with pytest.raises(ValueError, match="learning_rate must be"):
        optimizers.SGD(learning_rate=lambda: 0.1)


BAD = [
    (optimizers.SGD, dict(momentum=-1), r"momentum must be in \[0, 1\]. Received: momentum=-1"),
    (optimizers.SGD, dict(momentum=1.5), r"momentum must be in \[0, 1\]. Received: momentum=1.5"),
    (optimizers.SGD, dict(nesterov="yes"),
     r"nesterov must be True or False. Received: nesterov='yes'"),
    (optimizers.RMSprop, dict(rho=1.0), r"rho must be in \[0, 1\). Received: rho=1.0"),
    (optimizers.RMSprop, dict(rho=-0.1), r"rho must be in \[0, 1\). Received: rho=-0.1"),
    (optimizers.RMSprop, dict(momentum=2), r"momentum must be in \[0, 1\]. Received: momentum=2"),
    (optimizers.RMSprop, dict(epsilon=0), r"epsilon must be a positive number. Received: epsilon=0"),
    (optimizers.RMSprop, dict(centered=1), r"centered must be True or False. Received: centered=1"),
    (optimizers.Adam, dict(beta_1=1.0), r"beta_1 must be in \[0, 1\). Received: beta_1=1.0"),
    (optimizers.Adam, dict(beta_2=-0.5), r"beta_2 must be in \[0, 1\). Received: beta_2=-0.5"),
    (optimizers.Adam, dict(epsilon=-1e-7), r"epsilon must be a positive number"),
    (optimizers.Adam, dict(amsgrad=None), r"amsgrad must be True or False. Received: amsgrad=None"),
    (optimizers.AdamW, dict(weight_decay=None),
     r"Argument `weight_decay` must be a float. Received: weight_decay=None"),
    (optimizers.AdamW, dict(weight_decay=-0.1),
     r"weight_decay must be a non-negative number. Received: weight_decay=-0.1"),
    (optimizers.Adagrad, dict(initial_accumulator_value=-1),
     r"initial_accumulator_value must be a non-negative number. "
     r"Received: initial_accumulator_value=-1"),
    (optimizers.Adamax, dict(beta_1=2), r"beta_1 must be in \[0, 1\). Received: beta_1=2"),
    (optimizers.Nadam, dict(beta_2=1), r"beta_2 must be in \[0, 1\). Received: beta_2=1"),
    (optimizers.Nadam, dict(clipnorm=0), r"clipnorm must be a positive number. Received: clipnorm=0"),
    (optimizers.SGD, dict(clipvalue=-1), r"clipvalue must be a positive number. Received: clipvalue=-1"),
    (optimizers.SGD, dict(global_clipnorm="1"),
     r"global_clipnorm must be a positive number. Received: global_clipnorm='1'"),
    (optimizers.SGD, dict(weight_decay=-1),
     r"weight_decay must be a non-negative number. Received: weight_decay=-1"),
    (optimizers.SGD, dict(clipnorm=1.0, clipvalue=0.5),
     r"Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. Received: "
     r"clipnorm=1.0, clipvalue=0.5, global_clipnorm=None"),
    (optimizers.Adam, dict(clipnorm=1.0, global_clipnorm=2.0), r"Only one of `clipnorm`"),
    (optimizers.SGD, dict(use_ema=True), r"fastnn does not support use_ema. Received: use_ema=True"),
    (optimizers.SGD, dict(beta_1=0.9), r"Argument\(s\) not recognized: \{'beta_1': 0.9\}"),
]


@pytest.mark.parametrize("cls,kwargs,match", BAD, ids=[f"{c.__name__}-{k}" for c, k, _ in BAD])
def test_bad_arguments_name_the_argument(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


ASSIGNABLE = [b for b in BAD if len(b[1]) == 1 and "use_ema" not in b[1]
              and not (b[0] is optimizers.SGD and "beta_1" in b[1])]


@pytest.mark.parametrize("cls,kwargs,match", ASSIGNABLE,
                         ids=[f"{c.__name__}-{k}" for c, k, _ in ASSIGNABLE])
def test_bad_values_are_refused_on_assignment_too(cls, kwargs, match):
    opt = cls()
    state = opt._make_state(3)
    (name, value), = kwargs.items()
    before = getattr(state, name, None)
    with pytest.raises(ValueError, match=match):
        setattr(opt, name, value)
    assert getattr(state, name, None) == before  # nothing written through


def test_only_one_clip_option_on_assignment():
    opt = optimizers.SGD(clipnorm=1.0)
    with pytest.raises(ValueError, match=r"Received: clipnorm=1.0, clipvalue=0.5, "
                                         r"global_clipnorm=None"):
        opt.clipvalue = 0.5
    opt.clipnorm = None
    opt.clipvalue = 0.5
    assert (opt.clipnorm, opt.clipvalue) == (None, 0.5)


def test_keras_decay_argument_warns_and_is_ignored():
    with pytest.warns(UserWarning, match="`decay` is no longer supported"):
        optimizers.SGD(decay=0.1)


# ---- config, serialize, deserialize ---------------------------------------------------------------

ROUND_TRIP = [
    optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=True, clipnorm=1.0),
    optimizers.RMSprop(learning_rate=0.02, rho=0.8, momentum=0.1, epsilon=1e-5, centered=True,
                       weight_decay=0.01, name="my_rmsprop"),
    optimizers.Adam(learning_rate=EXP, amsgrad=True, global_clipnorm=3.0),
    optimizers.AdamW(learning_rate=schedules.PiecewiseConstantDecay([10, 20], [0.1, 0.01, 1e-3]),
                     weight_decay=0.1),
    optimizers.Adagrad(learning_rate=0.3, initial_accumulator_value=0.2, clipvalue=0.5),
    optimizers.Adamax(learning_rate=COSINE, beta_2=0.99),
    optimizers.Nadam(learning_rate=schedules.PolynomialDecay(0.1, 100, cycle=True, power=2.0)),
    optimizers.SGD(learning_rate=schedules.InverseTimeDecay(0.1, 10, 0.5, staircase=True)),
]


@pytest.mark.parametrize("opt", ROUND_TRIP, ids=[type(o).__name__ for o in ROUND_TRIP])
def test_serialize_deserialize_round_trip(opt):
    config = optimizers.serialize(opt)
    assert config["class_name"] == type(opt).__name__
    assert config["module"] == "fastnn.optimizers"
    again = optimizers.deserialize(json.loads(json.dumps(config)))
    assert type(again) is type(opt)
    assert again.get_config() == opt.get_config()
    assert optimizers.serialize(again) == config
    assert type(again).from_config(opt.get_config()).get_config() == opt.get_config()
    assert optimizers.get(config).get_config() == opt.get_config()
    lr = opt._learning_rate
    if isinstance(lr, schedules.LearningRateSchedule):
        assert again._learning_rate == lr and again._learning_rate is not lr


def test_get_config_is_keras_shaped():
    config = optimizers.Adam(learning_rate=0.01).get_config()
    assert config == {"name": "adam", "learning_rate": 0.01, "weight_decay": None,
                      "clipnorm": None, "global_clipnorm": None, "clipvalue": None,
                      "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
                      "loss_scale_factor": None, "gradient_accumulation_steps": None,
                      "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False}


def test_deserialize_reads_keras_configs_and_fastnn_0_1():
    keras_config = {"module": "keras.optimizers", "class_name": "RMSprop", "registered_name": None,
                    "config": {"name": "rmsprop", "learning_rate": 0.005, "weight_decay": None,
                               "clipnorm": None, "global_clipnorm": None, "clipvalue": None,
                               "use_ema": False, "ema_momentum": 0.99,
                               "ema_overwrite_frequency": None, "loss_scale_factor": None,
                               "gradient_accumulation_steps": None, "rho": 0.8,
                               "momentum": 0.0, "epsilon": 1e-07, "centered": False}}
    opt = optimizers.deserialize(keras_config)
    assert type(opt) is optimizers.RMSprop and (opt.learning_rate, opt.rho) == (0.005, 0.8)
    old = optimizers.deserialize({"name": "RMSprop", "learning_rate": 0.01, "rho": 0.8,
                                  "epsilon": 1e-7})
    assert type(old) is optimizers.RMSprop and (old.learning_rate, old.rho) == (0.01, 0.8)
    with pytest.raises(ValueError, match=r"Unknown optimizer: 'Lion'"):
        optimizers.deserialize({"class_name": "Lion", "config": {}})
    with pytest.raises(ValueError, match=r"Expected a dict"):
        optimizers.deserialize("adam")


def test_config_reads_live_settings():
    opt = optimizers.SGD()
    opt._make_state(3)
    opt.momentum, opt.learning_rate = 0.5, 0.2
    config = opt.get_config()
    assert (config["momentum"], config["learning_rate"]) == (0.5, 0.2)


# ---- end to end: fit() steps the way the formulas say ---------------------------------------

def _subset(housing, n=64):
    return housing.x_train[:n], housing.y_train[:n]


@pytest.mark.parametrize("shuffle", [False, True])
def test_one_full_batch_sgd_step_matches_numpy(housing, ref, article_model, article_acts, shuffle):
    x, y = _subset(housing)
    model = article_model(seed=3)
    model.compile(optimizer=optimizers.SGD(learning_rate=0.01), loss="mse")
    w0 = model.get_weights()
    model.fit(x, y, batch_size=len(x), epochs=1, verbose=0, shuffle=shuffle)
    _, grads = ref.mlp_loss_and_grads(w0, article_acts, x, y)
    for got, w, g in zip(model.get_weights(), w0, grads):
        np.testing.assert_allclose(got, w.astype(np.float64) - 0.01 * g, rtol=1e-5, atol=1e-6)
    assert model.optimizer.iterations == 1


OPT_CASES = [
    (optimizers.SGD(learning_rate=0.003, momentum=0.8),
     dict(kind="sgd", learning_rate=0.003, momentum=0.8)),
    (optimizers.RMSprop(learning_rate=0.01, rho=0.7, epsilon=1e-4),
     dict(kind="rmsprop", learning_rate=0.01, rho=0.7, epsilon=1e-4)),
    (optimizers.Adam(learning_rate=0.02, beta_1=0.8, beta_2=0.9, epsilon=1e-5),
     dict(kind="adam", learning_rate=0.02, beta_1=0.8, beta_2=0.9, epsilon=1e-5)),
    ("rmsprop", dict(kind="rmsprop", learning_rate=0.001, rho=0.9, epsilon=1e-7)),
    ("sgd", dict(kind="sgd", learning_rate=0.01)),
    ("adam", dict(kind="adam", learning_rate=0.001)),
]


@pytest.mark.parametrize("optimizer,reference", OPT_CASES,
                         ids=["sgd-momentum", "rmsprop", "adam", "rmsprop-default",
                              "sgd-default", "adam-default"])
def test_fit_passes_hyper_parameters_to_the_engine(housing, ref, article_model, article_acts,
                                                   optimizer, reference):
    """Minibatches of 16 over 64 rows, 3 epochs, in order: 12 steps vs the float64 reference."""
    x, y = _subset(housing)
    model = article_model(seed=5)
    if isinstance(optimizer, optimizers.Optimizer):  # a fresh instance per test
        optimizer = type(optimizer)(**{k: v for k, v in reference.items() if k != "kind"})
    model.compile(optimizer=optimizer, loss="mse")
    w0 = model.get_weights()
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False)
    expected = ref.train_reference(w0, article_acts, x, y, ref.Optimizer(**reference),
                                   batch_size=16, epochs=3)
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert model.optimizer.iterations == 12


class _FlatRef:
    """KerasRef with conftest's step(flat_w, flat_g) shape: the flat vectors are cut into
    the model's weight arrays (clipnorm and weight decay work per array, as in Keras)."""

    def __init__(self, opt, weights, decay_mask=None):
        lr = opt._learning_rate
        self.sizes = [w.size for w in weights]
        self.ref = KerasRef(type(opt).__name__.lower(), opt.get_config(), self.sizes, decay_mask,
                            schedule=lr if isinstance(lr, schedules.LearningRateSchedule) else None)

    def step(self, w, g):
        cut = np.cumsum(self.sizes)[:-1]
        return np.concatenate(self.ref.step(np.split(w, cut), np.split(g, cut)))


def _adamw_without_bias_decay():
    opt = optimizers.AdamW(learning_rate=0.01, weight_decay=0.5)
    opt.exclude_from_weight_decay(var_names=["bias"])
    return opt


@pytest.mark.parametrize("make,mask", [
    (lambda: optimizers.SGD(
        learning_rate=schedules.PiecewiseConstantDecay([3, 7], [0.01, 0.003, 0.0])), None),
    (lambda: optimizers.Nadam(
        learning_rate=schedules.ExponentialDecay(0.02, 4, 0.5, staircase=True), clipnorm=0.5),
     None),
    (lambda: optimizers.AdamW(learning_rate=0.01, weight_decay=0.2), None),
    (_adamw_without_bias_decay, [True, False] * 3),
], ids=["sgd-piecewise", "nadam-exponential-clipnorm", "adamw", "adamw-no-bias-decay"])
def test_fit_applies_schedule_clipping_and_decay_per_step_and_array(
        housing, ref, article_model, article_acts, make, mask):
    """3 epochs of 4 steps in one native call: the rate changes mid-epoch, and clipnorm and
    weight decay work per weight array ('dense/kernel', 'dense/bias', ...), as in Keras."""
    x, y = _subset(housing)
    model = article_model(seed=6)
    model.compile(optimizer=make(), loss="mse")
    w0 = model.get_weights()
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False)
    expected = ref.train_reference(w0, article_acts, x, y, _FlatRef(make(), w0, mask),
                                   batch_size=16, epochs=3)
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert model.optimizer.iterations == 12


def test_fit_with_learning_rate_set_to_zero_leaves_weights(housing, article_model):
    x, y = _subset(housing)
    model = article_model(seed=4)
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    model.optimizer.learning_rate = 0.0  # on the state the model already holds
    before = model.get_weights()
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)
    assert model.optimizer.iterations == 12


def test_recompile_resets_optimizer_state(housing, article_model):
    x, y = _subset(housing)
    model = article_model(seed=1)
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert model.optimizer.iterations == 4
    model.compile(optimizer="adam", loss="mse")
    assert model.optimizer.iterations == 0
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert model.optimizer.iterations == 4


def test_fit_continues_optimizer_state_across_calls(housing, ref, article_model, article_acts):
    """Two fit() calls of one epoch each equal one fit() of two epochs (Adam's t keeps counting)."""
    x, y = _subset(housing)
    a = article_model(seed=2)
    a.compile(optimizer=optimizers.Adam(learning_rate=0.01), loss="mse")
    a.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
    a.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
    b = article_model(seed=2)
    b.compile(optimizer=optimizers.Adam(learning_rate=0.01), loss="mse")
    b.fit(x, y, batch_size=32, epochs=2, verbose=0, shuffle=False)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert a.optimizer.iterations == b.optimizer.iterations == 4


def test_fastnn_exports_optimizers():
    assert fastnn.optimizers is optimizers
    assert optimizers.schedules is schedules
    assert importlib.import_module("fastnn.optimizers.schedules") is schedules

"""Optimizers: the fused C update (OptimizerState.step) against Keras' formulas in
float64, the Python classes' defaults and validation, and their use in fit()."""
import numpy as np
import pytest

import fastnn
from fastnn import _engine, optimizers

CONFIGS = [
    ("sgd", dict(learning_rate=0.1)),
    ("sgd", dict(learning_rate=0.05, momentum=0.9)),
    ("sgd", dict(learning_rate=0.2, momentum=0.5)),
    ("rmsprop", dict(learning_rate=0.01, rho=0.9, epsilon=1e-7)),
    ("rmsprop", dict(learning_rate=0.05, rho=0.5, epsilon=1e-3)),
    ("rmsprop", dict(learning_rate=0.05, rho=0.0, epsilon=0.5)),
    ("adam", dict(learning_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-7)),
    ("adam", dict(learning_rate=0.1, beta_1=0.5, beta_2=0.8, epsilon=0.3)),
]


def _ids(config):
    kind, hyper = config
    return kind + "-" + "-".join(f"{k}={v}" for k, v in hyper.items())


@pytest.mark.parametrize("n", [1, 7, 1000])
@pytest.mark.parametrize("config", CONFIGS, ids=[_ids(c) for c in CONFIGS])
def test_optimizer_state_matches_keras_formulas(rng, ref, config, n):
    kind, hyper = config
    state = _engine.OptimizerState(kind, n, **hyper)
    # the engine holds hyper-parameters as float32 (as Keras does): 1 - beta_2 for
    # beta_2 = 0.999 differs from its float64 value by 1e-5 relative, so round them alike
    reference = ref.Optimizer(kind, **{k: float(np.float32(v)) for k, v in hyper.items()})
    w = rng.standard_normal(n).astype(np.float32)
    w_ref = w.astype(np.float64)
    for step in range(5):
        g = rng.standard_normal(n).astype(np.float32)
        if step == 2:
            g[: n // 3] *= 1e-3  # small gradients, where epsilon matters
        state.step(w, g)
        w_ref = reference.step(w_ref, g)
        np.testing.assert_allclose(w, w_ref, rtol=2e-6, atol=2e-6, err_msg=f"step {step + 1}")
    assert state.iterations == 5
    # the slots hold Keras' state variables
    if kind == "rmsprop" or (kind == "sgd" and hyper.get("momentum")):
        np.testing.assert_allclose(state.slot1[:n], reference.s1, rtol=2e-6, atol=1e-7)
    if kind == "adam":
        np.testing.assert_allclose(state.slot1[:n], reference.s1, rtol=2e-6, atol=1e-7)
        np.testing.assert_allclose(state.slot2[:n], reference.s2, rtol=2e-6, atol=1e-7)


def test_rmsprop_epsilon_is_inside_the_root(rng):
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


def test_optimizer_state_learning_rate_and_iterations(rng):
    state = _engine.OptimizerState("sgd", 3, learning_rate=0.1)
    w = np.ones(3, np.float32)
    g = np.array([1.0, 2.0, 3.0], np.float32)
    state.set_learning_rate(0.5)
    state.step(w, g)
    np.testing.assert_allclose(w, 1.0 - 0.5 * g)
    assert state.iterations == 1
    state.iterations = 10
    assert state.iterations == 10


def test_optimizer_state_accepts_a_prefix_of_its_slots(rng):
    state = _engine.OptimizerState("rmsprop", 10, learning_rate=0.01)
    w = np.ones(4, np.float32)
    state.step(w, np.ones(4, np.float32))
    assert np.all(w < 1.0)
    np.testing.assert_array_equal(state.slot1[4:], 0.0)


def test_optimizer_state_errors():
    with pytest.raises(ValueError, match=r"unknown optimizer 'nadam'; valid: \['adam', 'rmsprop', 'sgd'\]"):
        _engine.OptimizerState("nadam", 3, learning_rate=0.1)
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


# ---- the Python classes --------------------------------------------------------------------

def test_defaults_follow_keras():
    sgd = optimizers.SGD()
    assert (sgd.learning_rate, sgd.momentum) == (0.01, 0.0)
    rms = optimizers.RMSprop()
    assert (rms.learning_rate, rms.rho, rms.epsilon) == (0.001, 0.9, 1e-7)
    adam = optimizers.Adam()
    assert (adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon) == (0.001, 0.9, 0.999, 1e-7)


@pytest.mark.parametrize("name,cls", [("sgd", optimizers.SGD), ("SGD", optimizers.SGD),
                                      ("rmsprop", optimizers.RMSprop),
                                      ("RMSprop", optimizers.RMSprop),
                                      ("adam", optimizers.Adam), ("Adam", optimizers.Adam)])
def test_get_by_name(name, cls):
    opt = optimizers.get(name)
    assert type(opt) is cls
    assert optimizers.get(opt) is opt


@pytest.mark.parametrize("identifier", ["nadam", "", "rms_prop", 3, None])
def test_get_unknown_lists_valid_names(identifier):
    with pytest.raises(ValueError, match=r"Unknown optimizer: .*Valid names: \['adam', 'rmsprop', 'sgd'\]"):
        optimizers.get(identifier)


@pytest.mark.parametrize("cls", [optimizers.SGD, optimizers.RMSprop, optimizers.Adam])
@pytest.mark.parametrize("lr", [0, 0.0, -0.1, -1, True, "0.1", None])
def test_learning_rate_must_be_positive(cls, lr):
    with pytest.raises(ValueError, match=rf"learning_rate must be a positive number. "
                                         rf"Received: learning_rate={lr!r}"):
        cls(learning_rate=lr)


@pytest.mark.parametrize("rho", [1.0, 1.5, -0.1, -1])
def test_rmsprop_rho_range(rho):
    with pytest.raises(ValueError, match=rf"rho must be in \[0, 1\). Received: rho={rho!r}"):
        optimizers.RMSprop(rho=rho)


def test_rmsprop_rho_zero_is_allowed():
    assert optimizers.RMSprop(rho=0.0).rho == 0.0


@pytest.mark.parametrize("kwargs,match", [
    (dict(epsilon=0), r"epsilon must be a positive number. Received: epsilon=0"),
    (dict(epsilon=-1e-7), r"epsilon must be a positive number"),
    (dict(momentum=0.9), r"RMSprop supports momentum=0.0 and centered=False only"),
    (dict(centered=True), r"Received: momentum=0.0, centered=True"),
])
def test_rmsprop_unsupported_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optimizers.RMSprop(**kwargs)


@pytest.mark.parametrize("momentum", [-0.1, 1.5])
def test_sgd_momentum_range(momentum):
    with pytest.raises(ValueError, match=rf"momentum must be in \[0, 1\]. Received: momentum={momentum!r}"):
        optimizers.SGD(momentum=momentum)


@pytest.mark.parametrize("kwargs,match", [
    (dict(beta_1=1.0), r"beta_1 must be in \[0, 1\). Received: beta_1=1.0"),
    (dict(beta_2=-0.5), r"beta_2 must be in \[0, 1\). Received: beta_2=-0.5"),
    (dict(epsilon=0.0), r"epsilon must be a positive number"),
])
def test_adam_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optimizers.Adam(**kwargs)


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

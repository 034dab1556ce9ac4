"""Learning-rate schedules: the C evaluation (schedule(step), and inside the optimizer's
update) against Keras 3's formulas written in NumPy float64; argument checks; config."""
import json
import math

import numpy as np
import pytest

from fastnn import optimizers
from fastnn.optimizers import schedules

STEPS = np.arange(0, 400)


# ---- Keras 3's formulas, in float64 ------------------------------------------------------------

def exponential(t, initial, decay_steps, rate, staircase=False):
    p = t / decay_steps
    return initial * rate ** (np.floor(p) if staircase else p)


def piecewise(t, boundaries, values):
    """Keras' sum of indicators (so that it holds for unsorted boundaries too), boundaries
    cast to the integer step type."""
    b = [math.trunc(x) for x in boundaries]
    out = (t <= b[0]) * values[0] + (t > b[-1]) * values[-1]
    for low, high, v in zip(b[:-1], b[1:], values[1:-1]):
        out = out + ((t > low) & (t <= high)) * v
    return out


def polynomial(t, initial, decay_steps, end=0.0001, power=1.0, cycle=False):
    t = np.asarray(t, np.float64)
    if cycle:
        steps = decay_steps * np.where(t == 0, 1.0, np.ceil(t / decay_steps))
    else:
        steps, t = decay_steps, np.minimum(t, decay_steps)
    return (initial - end) * (1 - t / steps) ** power + end


def inverse_time(t, initial, decay_steps, rate, staircase=False):
    p = t / decay_steps
    return initial / (1 + rate * (np.floor(p) if staircase else p))


def cosine(t, initial, decay_steps, alpha=0.0, warmup_target=None, warmup_steps=0):
    t = np.asarray(t, np.float64)

    def decayed(step, start):
        return start * ((1 - alpha) * 0.5 * (1 + np.cos(np.pi * step / decay_steps)) + alpha)

    if warmup_target is None:
        return decayed(np.minimum(t, decay_steps), initial)
    t = np.minimum(t, decay_steps + warmup_steps)
    warm = (warmup_target - initial) * (t / max(warmup_steps, 1e-300)) + initial
    return np.where(t < warmup_steps, warm, decayed(t - warmup_steps, warmup_target))


CASES = [
    (schedules.ExponentialDecay(0.1, 10, 0.5), lambda t: exponential(t, 0.1, 10, 0.5)),
    (schedules.ExponentialDecay(0.1, 7, 0.9, staircase=True),
     lambda t: exponential(t, 0.1, 7, 0.9, True)),
    (schedules.ExponentialDecay(1e-3, 100000, 0.96), lambda t: exponential(t, 1e-3, 100000, 0.96)),
    (schedules.PiecewiseConstantDecay([10, 50, 200], [1.0, 0.5, 0.1, 0.01]),
     lambda t: piecewise(t, [10, 50, 200], [1.0, 0.5, 0.1, 0.01])),
    (schedules.PiecewiseConstantDecay([100], [0.1, 0.2]), lambda t: piecewise(t, [100], [0.1, 0.2])),
    (schedules.PiecewiseConstantDecay([50, 10], [1.0, 0.5, 0.25]),  # unsorted: Keras' sums
     lambda t: piecewise(t, [50, 10], [1.0, 0.5, 0.25])),
    (schedules.PiecewiseConstantDecay([9.7, 20.2], [3.0, 2.0, 1.0]),  # truncated to 9 and 20
     lambda t: piecewise(t, [9.7, 20.2], [3.0, 2.0, 1.0])),
    (schedules.PolynomialDecay(0.1, 100), lambda t: polynomial(t, 0.1, 100)),
    (schedules.PolynomialDecay(0.1, 60, end_learning_rate=0.01, power=0.5),
     lambda t: polynomial(t, 0.1, 60, 0.01, 0.5)),
    (schedules.PolynomialDecay(0.1, 60, end_learning_rate=0.01, power=2.0, cycle=True),
     lambda t: polynomial(t, 0.1, 60, 0.01, 2.0, True)),
    (schedules.InverseTimeDecay(0.1, 1.0, 0.5), lambda t: inverse_time(t, 0.1, 1.0, 0.5)),
    (schedules.InverseTimeDecay(0.1, 25, 2.0, staircase=True),
     lambda t: inverse_time(t, 0.1, 25, 2.0, True)),
    (schedules.CosineDecay(0.1, 300), lambda t: cosine(t, 0.1, 300)),
    (schedules.CosineDecay(0.1, 150, alpha=0.2), lambda t: cosine(t, 0.1, 150, 0.2)),
    (schedules.CosineDecay(0.0, 200, warmup_target=0.1, warmup_steps=50),
     lambda t: cosine(t, 0.0, 200, 0.0, 0.1, 50)),
    (schedules.CosineDecay(0.01, 100, alpha=0.1, warmup_target=0.1, warmup_steps=30),
     lambda t: cosine(t, 0.01, 100, 0.1, 0.1, 30)),
    (schedules.CosineDecay(0.05, 100, warmup_target=0.2, warmup_steps=0),
     lambda t: cosine(t, 0.05, 100, 0.0, 0.2, 0)),
]


def _id(case):
    s = case[0]
    return type(s).__name__ + "-" + "-".join(f"{k}={v}" for k, v in s.get_config().items()
                                             if k != "name")


@pytest.mark.parametrize("schedule,formula", CASES, ids=[_id(c) for c in CASES])
def test_schedule_matches_keras_formula(schedule, formula):
    got = schedule(STEPS)
    assert got.dtype == np.float32 and got.shape == STEPS.shape
    np.testing.assert_allclose(got, formula(STEPS.astype(np.float64)), rtol=2e-7, atol=1e-12)
    one = schedule(37)
    assert isinstance(one, np.float32)
    assert one == got[37]


@pytest.mark.parametrize("schedule,formula", CASES, ids=[_id(c) for c in CASES])
def test_update_uses_the_schedule_at_iterations_before_the_step(schedule, formula):
    """SGD with g = 1: each step moves w by exactly -lr(t), t = 0, 1, 2, ... (Keras
    evaluates the schedule before counting the step)."""
    opt = optimizers.SGD(learning_rate=schedule)
    state = opt._make_state(1)
    w = np.zeros(1, np.float32)
    moves = []
    for t in range(120):
        assert opt.learning_rate == schedule(t)
        before = float(w[0])
        state.step(w, np.ones(1, np.float32))
        moves.append(before - float(w[0]))
        w[0] = 0.0
    np.testing.assert_allclose(moves, formula(np.arange(120.0)).astype(np.float32), rtol=1e-6,
                               atol=1e-12)


def test_piecewise_boundary_steps_belong_to_the_earlier_value():
    s = schedules.PiecewiseConstantDecay([2], [1.0, 0.5])
    assert [float(s(t)) for t in range(5)] == [1.0, 1.0, 1.0, 0.5, 0.5]


def test_staircase_and_cycle_jump_where_keras_jumps():
    s = schedules.ExponentialDecay(1.0, 10, 0.5, staircase=True)
    assert (s(9), s(10), s(19), s(20)) == (1.0, 0.5, 0.5, 0.25)
    p = schedules.PolynomialDecay(1.0, 10, end_learning_rate=0.0, cycle=True)
    # t=10 ends the first cycle (rate = end); t=11 starts the second, over 20 steps
    np.testing.assert_allclose([p(0), p(5), p(10), p(11), p(20)],
                               [1.0, 0.5, 0.0, 1 - 11 / 20, 0.0], atol=1e-7)
    c = schedules.CosineDecay(0.0, 10, warmup_target=1.0, warmup_steps=4)
    np.testing.assert_allclose([c(0), c(2), c(4), c(9), c(14), c(100)],
                               [0.0, 0.5, 1.0, 0.5, 0.0, 0.0], atol=1e-7)


# ---- argument checks: Keras' own, plus numbers that must be numbers --------------------------------

@pytest.mark.parametrize("make,match", [
    (lambda: schedules.ExponentialDecay(0.1, 0, 0.5),
     r"Argument `decay_steps` must be > 0. Received: decay_steps=0"),
    (lambda: schedules.ExponentialDecay(0.1, -10, 0.5),
     r"Argument `decay_steps` must be > 0. Received: decay_steps=-10"),
    (lambda: schedules.PolynomialDecay(0.1, 0),
     r"Argument `decay_steps` must be > 0. Received: decay_steps=0"),
    (lambda: schedules.InverseTimeDecay(0.1, -1.5, 0.5),
     r"Argument `decay_steps` must be > 0. Received: decay_steps=-1.5"),
    (lambda: schedules.CosineDecay(0.1, 0),
     r"Argument `decay_steps` must be > 0. Received: decay_steps=0"),
    (lambda: schedules.PiecewiseConstantDecay([10, 20], [1.0, 0.5]),
     r"The length of boundaries should be 1 less than the length of values. Received: "
     r"boundaries=\[10, 20\] of length 2, and values=\[1.0, 0.5\] of length 2."),
    (lambda: schedules.ExponentialDecay("0.1", 10, 0.5),
     r"Argument `initial_learning_rate` must be a number. Received: initial_learning_rate='0.1'"),
    (lambda: schedules.ExponentialDecay(0.1, 10, None),
     r"Argument `decay_rate` must be a number. Received: decay_rate=None"),
    (lambda: schedules.ExponentialDecay(0.1, 10, 0.5, staircase="yes"),
     r"Argument `staircase` must be True or False. Received: staircase='yes'"),
    (lambda: schedules.PolynomialDecay(0.1, 10, power=True),
     r"Argument `power` must be a number. Received: power=True"),
    (lambda: schedules.CosineDecay(0.1, 10, warmup_target="high"),
     r"Argument `warmup_target` must be a number. Received: warmup_target='high'"),
    (lambda: schedules.PiecewiseConstantDecay([10], [1.0, "0.5"]),
     r"Argument `values` must be a number. Received: values='0.5'"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# ---- config -----------------------------------------------------------------------------------

@pytest.mark.parametrize("schedule", [c[0] for c in CASES], ids=[_id(c) for c in CASES])
def test_config_round_trip(schedule):
    config = schedule.get_config()
    again = type(schedule).from_config(config)
    assert again.get_config() == config
    assert again == schedule
    data = json.loads(json.dumps(schedules.serialize(schedule)))
    assert data["class_name"] == type(schedule).__name__
    back = schedules.deserialize(data)
    assert back == schedule
    np.testing.assert_array_equal(back(STEPS), schedule(STEPS))


def test_config_is_keras_shaped():
    assert schedules.CosineDecay(0.1, 100).get_config() == {
        "initial_learning_rate": 0.1, "decay_steps": 100, "alpha": 0.0, "name": "CosineDecay",
        "warmup_target": None, "warmup_steps": 0}
    assert schedules.PiecewiseConstantDecay([1], [2.0, 1.0]).get_config() == {
        "boundaries": [1], "values": [2.0, 1.0], "name": "PiecewiseConstant"}
    keras = {"module": "keras.optimizers.schedules", "class_name": "ExponentialDecay",
             "config": {"initial_learning_rate": 0.1, "decay_steps": 100, "decay_rate": 0.9,
                        "staircase": False, "name": "ExponentialDecay"},
             "registered_name": None}
    assert schedules.deserialize(keras) == schedules.ExponentialDecay(0.1, 100, 0.9)


def test_deserialize_unknown():
    with pytest.raises(ValueError, match=r"Unknown learning rate schedule: 'CosineDecayRestarts'"):
        schedules.deserialize({"class_name": "CosineDecayRestarts", "config": {}})
    with pytest.raises(ValueError, match=r"Expected a dict with 'class_name' and 'config'"):
        schedules.deserialize({"initial_learning_rate": 0.1})


def test_numpy_scalars_become_plain_numbers():
    s = schedules.ExponentialDecay(np.float32(0.5), np.int64(10), np.float64(0.5))
    json.dumps(s.get_config())
    assert type(s.decay_steps) is int

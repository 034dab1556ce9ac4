# Included by _engine.pyx: the optimizer state that the engine updates each step, and
# the learning-rate schedules' evaluation. C declarations: fastnn/_coptimizers.pxd
# (csrc/optimizers.h). fastnn/optimizers/ validates hyper-parameters; this layer checks
# buffers and layouts and writes values into the C struct.

# the kinds by name, from the C table itself
OPTIMIZERS = {fnn_optimizer_kinds[k].name.decode(): k for k in range(FNN_OPT_KINDS)}

SCHEDULES = {"exponential": FNN_SCHEDULE_EXPONENTIAL, "piecewise": FNN_SCHEDULE_PIECEWISE,
             "polynomial": FNN_SCHEDULE_POLYNOMIAL, "inverse_time": FNN_SCHEDULE_INVERSE_TIME,
             "cosine": FNN_SCHEDULE_COSINE}

CLIPS = {"clipnorm": FNN_CLIP_NORM, "clipvalue": FNN_CLIP_VALUE,
         "global_clipnorm": FNN_CLIP_GLOBAL_NORM}


cdef int _fill_schedule(fnn_schedule *s, dict spec, list keep) except -1:
    """Writes spec (a schedule's _spec(): {"kind": ..., field: value}) into s. The
    piecewise arrays are appended to keep, which must outlive s."""
    if spec["kind"] not in SCHEDULES:
        raise ValueError(f"unknown schedule {spec['kind']!r}; valid: {sorted(SCHEDULES)}")
    cdef fnn_schedule t
    memset(&t, 0, sizeof(t))
    t.kind = SCHEDULES[spec["kind"]]
    t.initial = spec.get("initial", 0.0)
    t.decay_steps = spec.get("decay_steps", 1.0)
    t.decay_rate = spec.get("decay_rate", 0.0)
    t.end = spec.get("end", 0.0)
    t.power = spec.get("power", 1.0)
    t.alpha = spec.get("alpha", 0.0)
    t.warmup = spec.get("warmup_target") is not None
    t.warmup_target = spec["warmup_target"] if t.warmup else 0.0
    t.warmup_steps = spec.get("warmup_steps", 0.0)
    t.staircase = bool(spec.get("staircase", False))
    t.cycle = bool(spec.get("cycle", False))
    cdef cnp.ndarray b, v
    if t.kind == FNN_SCHEDULE_PIECEWISE:
        b = np.ascontiguousarray(spec["boundaries"], dtype=np.float64).reshape(-1)
        v = np.ascontiguousarray(spec["values"], dtype=np.float64).reshape(-1)
        if v.shape[0] != b.shape[0] + 1:
            raise ValueError(f"a piecewise schedule takes one value more than boundaries, got "
                             f"{b.shape[0]} boundaries and {v.shape[0]} values")
        keep += [b, v]
        t.n_boundaries = b.shape[0]
        t.boundaries = <const double *>cnp.PyArray_DATA(b)
        t.values = <const double *>cnp.PyArray_DATA(v)
    s[0] = t
    return 0


def schedule_values(dict spec, steps):
    """The learning rates (float32, as the engine uses them) that the schedule `spec`
    gives at each of `steps` (step counts, any shape)."""
    cdef fnn_schedule s
    cdef list keep = []
    _fill_schedule(&s, spec, keep)
    cdef cnp.ndarray t = np.asarray(steps, dtype=np.float64, order="C")  # keeps 0-d
    cdef cnp.ndarray out = np.empty((<object>t).shape, dtype=np.float32)
    cdef const double *tp = <const double *>cnp.PyArray_DATA(t)
    cdef float *op = fptr(out)
    cdef Py_ssize_t i, n = t.size
    with nogil:
        for i in range(n):
            op[i] = <float>fnn_schedule_value(&s, tp[i])
    return out


# ---- optimizer state ------------------------------------------------------------

cdef class OptimizerState:
    """The C optimizer of one model: hyper-parameters, schedule, variable layout and slot
    buffers (each laid out as the flat parameters).

    OptimizerState(kind, variables, learning_rate, **hyper): kind is a name in OPTIMIZERS;
    variables a list of (name, offset, size), contiguous from 0 in offset order (the
    trainable weight arrays in the flat buffer), or an int n (one variable "all");
    hyper any of the settable attributes below. Every attribute writes the C struct
    directly: the engine reads it at its next step. Slots an option may need later
    (momentum, centered, amsgrad) are allocated up front with np.zeros, whose pages
    the OS maps lazily: a slot no option touches costs address space, not memory.
    """
    cdef fnn_optimizer opt
    cdef readonly str kind
    cdef readonly tuple slots, variables
    cdef readonly int64_t size
    cdef object _bounds, _mask, _schedule_arrays

    def __init__(self, str kind, variables, float learning_rate, **hyper):
        if kind not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {kind!r}; valid: {sorted(OPTIMIZERS)}")
        memset(&self.opt, 0, sizeof(self.opt))
        self.kind = kind
        self.opt.kind = OPTIMIZERS[kind]
        self.opt.lr = learning_rate
        self.opt.rho, self.opt.momentum, self.opt.epsilon = 0.9, 0.0, 1e-7
        self.opt.beta1, self.opt.beta2, self.opt.initial_accumulator = 0.9, 0.999, 0.1
        self.opt.u_product = 1.0
        self._set_layout(variables)
        cdef int k
        slots = []
        for k in range(fnn_optimizer_kinds[self.opt.kind].n_slots):
            slots.append(np.zeros(max(self.size, 1), dtype=np.float32))
            self.opt.slots[k] = fptr(slots[k])
        self.slots = tuple(slots)
        for name, value in hyper.items():
            try:
                setattr(self, name, value)
            except AttributeError:
                raise TypeError(f"OptimizerState has no setting {name!r}") from None
        fnn_optimizer_init(&self.opt, <size_t>self.size)

    cdef int _set_layout(self, variables) except -1:
        if isinstance(variables, (int, np.integer)):
            if variables < 0:
                raise ValueError(f"n_params must be >= 0, got {variables}")
            variables = [("all", 0, int(variables))]
        layout = []
        cdef int64_t at = 0
        for item in variables:
            name, offset, size = item
            if offset != at or size < 0:
                raise ValueError(f"variables must lie contiguously from offset 0 in offset "
                                 f"order; {name!r} has offset {offset} and size {size} where "
                                 f"offset {at} was expected")
            layout.append((str(name), int(offset), int(size)))
            at += size
        self.variables = tuple(layout)
        self.size = at
        self._bounds = np.array([0] + [o + s for _, o, s in layout], dtype=np.int64)
        self.opt.n_vars = len(layout)
        self.opt.var_bounds = <const int64_t *>cnp.PyArray_DATA(self._bounds)
        return 0

    # -- the learning rate and its schedule ------------------------------------------
    @property
    def learning_rate(self):
        """The constant learning rate (used when no schedule is set)."""
        return self.opt.lr

    @learning_rate.setter
    def learning_rate(self, float value):
        self.opt.lr = value

    def set_schedule(self, spec):
        """Evaluates the schedule `spec` (a schedule's _spec()) at every step from now on,
        or the constant learning_rate again when spec is None. Like every setting, meant
        for between steps (callbacks): not while another thread runs the engine on it."""
        cdef fnn_schedule s
        cdef list keep = []
        if spec is None:
            memset(&s, 0, sizeof(s))
        else:
            _fill_schedule(&s, spec, keep)
        self.opt.schedule = s
        self._schedule_arrays = keep

    def current_learning_rate(self):
        """The learning rate the next step will use."""
        if self.opt.schedule.kind == FNN_SCHEDULE_NONE:
            return np.float32(self.opt.lr)
        return np.float32(fnn_schedule_value(&self.opt.schedule, <double>self.opt.iterations))

    # -- hyper-parameters -------------------------------------------------------------
    @property
    def rho(self):
        return self.opt.rho

    @rho.setter
    def rho(self, float value):
        self.opt.rho = value

    @property
    def momentum(self):
        return self.opt.momentum

    @momentum.setter
    def momentum(self, float value):
        self.opt.momentum = value

    @property
    def epsilon(self):
        return self.opt.epsilon

    @epsilon.setter
    def epsilon(self, float value):
        self.opt.epsilon = value

    @property
    def beta_1(self):
        return self.opt.beta1

    @beta_1.setter
    def beta_1(self, float value):
        self.opt.beta1 = value

    @property
    def beta_2(self):
        return self.opt.beta2

    @beta_2.setter
    def beta_2(self, float value):
        self.opt.beta2 = value

    @property
    def initial_accumulator_value(self):
        """Adagrad's accumulator start value (read when the slots are (re)initialised)."""
        return self.opt.initial_accumulator

    @initial_accumulator_value.setter
    def initial_accumulator_value(self, float value):
        self.opt.initial_accumulator = value

    @property
    def nesterov(self):
        return bool(self.opt.nesterov)

    @nesterov.setter
    def nesterov(self, bint value):
        self.opt.nesterov = value

    @property
    def centered(self):
        return bool(self.opt.centered)

    @centered.setter
    def centered(self, bint value):
        self.opt.centered = value

    @property
    def amsgrad(self):
        return bool(self.opt.amsgrad)

    @amsgrad.setter
    def amsgrad(self, bint value):
        self.opt.amsgrad = value

    @property
    def weight_decay(self):
        """Decoupled weight decay (w -= w * weight_decay * lr before each update), or None."""
        return None if self.opt.weight_decay == 0 else self.opt.weight_decay

    @weight_decay.setter
    def weight_decay(self, value):
        self.opt.weight_decay = 0.0 if value is None else value

    def set_decay_mask(self, mask):
        """Which variables weight decay applies to (a bool per variable); None: all."""
        if mask is None or all(mask):
            self.opt.decay_mask = NULL
            self._mask = None
            return
        cdef cnp.ndarray m = np.ascontiguousarray(mask, dtype=np.uint8).reshape(-1)
        if m.shape[0] != self.opt.n_vars:
            raise ValueError(f"mask must have one entry per variable ({self.opt.n_vars}), "
                             f"got {m.shape[0]}")
        self._mask = m
        self.opt.decay_mask = <const uint8_t *>cnp.PyArray_DATA(m)

    @property
    def decay_mask(self):
        if self._mask is None:
            return (True,) * self.opt.n_vars
        return tuple(bool(x) for x in self._mask)

    # clipping: one of clipnorm, clipvalue, global_clipnorm (or none); setting one
    # replaces any other, setting the active one to None turns clipping off
    cdef _clip_get(self, str name):
        return self.opt.clip_threshold if self.opt.clip == CLIPS[name] else None

    cdef _clip_set(self, str name, value):
        if value is not None:
            self.opt.clip_threshold = value
            self.opt.clip = CLIPS[name]
        elif self.opt.clip == CLIPS[name]:
            self.opt.clip = FNN_CLIP_NONE

    @property
    def clipnorm(self):
        return self._clip_get("clipnorm")

    @clipnorm.setter
    def clipnorm(self, value):
        self._clip_set("clipnorm", value)

    @property
    def clipvalue(self):
        return self._clip_get("clipvalue")

    @clipvalue.setter
    def clipvalue(self, value):
        self._clip_set("clipvalue", value)

    @property
    def global_clipnorm(self):
        return self._clip_get("global_clipnorm")

    @global_clipnorm.setter
    def global_clipnorm(self, value):
        self._clip_set("global_clipnorm", value)

    # -- progress -----------------------------------------------------------------------
    @property
    def iterations(self):
        """Updates done so far (the step count schedules and bias corrections read)."""
        return self.opt.iterations

    @iterations.setter
    def iterations(self, int64_t value):
        self.opt.iterations = value

    @property
    def u_product(self):
        """Nadam's running product of its momentum schedule (saved with the slots)."""
        return self.opt.u_product

    @u_product.setter
    def u_product(self, double value):
        self.opt.u_product = value

    @property
    def slot1(self):
        return self.slots[0] if len(self.slots) > 0 else None

    @property
    def slot2(self):
        return self.slots[1] if len(self.slots) > 1 else None

    def reset(self):
        """Slots back to their start values and iterations to 0 (in place: the engine's
        pointers stay valid)."""
        for s in self.slots:
            s[...] = 0
        fnn_optimizer_init(&self.opt, <size_t>self.size)

    def step(self, cnp.ndarray w, cnp.ndarray g):
        """One update of w in place from gradient g (both flat float32; w may be a prefix
        of the parameters). Clipping, when set, rescales g in place."""
        _check(w, "w", 1)
        _check_shape(g, "g", (w.shape[0],))
        if w.shape[0] > self.size:
            raise ValueError(f"w has {w.shape[0]} values, the state holds {self.size}")
        cdef size_t n = w.shape[0]
        with nogil:
            fnn_optimizer_step(&self.opt, fptr(w), fptr(g), n)


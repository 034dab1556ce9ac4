# Included by _engine.pyx: the optimizer state that the engine updates each step.
# C declarations: fastnn/_coptimizers.pxd (csrc/optimizers.h).

OPTIMIZERS = {"sgd": 0, "rmsprop": 1, "adam": 2}


# ---- optimizer state ------------------------------------------------------------

cdef class OptimizerState:
    """Hyper-parameters and slot buffers (same layout as the parameters)."""
    cdef fnn_optimizer opt
    cdef readonly object slot1, slot2

    def __init__(self, str kind, int64_t n_params, float learning_rate, float rho=0.9,
                 float momentum=0.0, float epsilon=1e-7, float beta_1=0.9, float beta_2=0.999):
        if kind not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {kind!r}; valid: {sorted(OPTIMIZERS)}")
        self.opt.kind = OPTIMIZERS[kind]
        self.opt.lr = learning_rate
        self.opt.rho = rho
        self.opt.momentum = momentum
        self.opt.epsilon = epsilon
        self.opt.beta1 = beta_1
        self.opt.beta2 = beta_2
        self.opt.iterations = 0
        self.slot1 = np.zeros(max(n_params, 1), dtype=np.float32)
        self.slot2 = np.zeros(max(n_params, 1) if kind == "adam" else 1, dtype=np.float32)
        self.opt.slot1 = fptr(self.slot1)
        self.opt.slot2 = fptr(self.slot2)

    @property
    def iterations(self):
        return self.opt.iterations

    @iterations.setter
    def iterations(self, int64_t value):
        self.opt.iterations = value

    def set_learning_rate(self, float lr):
        self.opt.lr = lr

    def step(self, cnp.ndarray w, cnp.ndarray g):
        """One update of w in place from gradient g (both flat float32)."""
        _check(w, "w", 1)
        _check_shape(g, "g", (w.shape[0],))
        if w.shape[0] > self.slot1.shape[0]:
            raise ValueError(f"w has {w.shape[0]} values, the state holds {self.slot1.shape[0]}")
        cdef size_t n = w.shape[0]
        with nogil:
            fnn_optimizer_step(&self.opt, fptr(w), fptr(g), n)

/* pool.c - fastnn's thread pool: a few workers, created once, that run the tasks of one
 * parallel region at a time beside the calling thread.
 *
 * Why its own pool: OpenBLAS's threads spin-wait for each other and collapse under load
 * (a descheduled thread stalls the rest), and a model's step is a handful of small
 * products, each too small to be worth a BLAS's fork-join.
 *
 * How a region runs: the caller publishes (function, context, task count) and a word of
 * claim bits; every thread, the caller included, claims its own tasks, then any left.
 * Which thread runs a task never matters: a task's work and its output buffers are fixed
 * by its index, so results depend on the task count alone, not on timing. Own tasks
 * first keep a task's data in one core's caches from region to region; taking the rest
 * means a worker that wakes late finds its task done by the caller: nobody waits for a
 * thread that is not running, which is what keeps a loaded machine from stalling a
 * region. The caller then waits only for tasks already claimed.
 *
 * Workers wait for the next region spinning briefly (steps come back to back), then
 * sleep on a condition variable, so an idle pool burns no core. One region runs at a
 * time: a second caller (another Python thread, another model) runs its tasks itself,
 * in order, with the same results. After fork() the child starts with no workers and
 * creates them on its first region. */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#endif
#include <stdint.h>
#include <stdlib.h>

#include "fastnn.h"
#include "fpu.h"

#if defined(_WIN32)
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <process.h>
#else
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>
#endif

/* ---- atomics and a CPU hint (GCC/clang builtins; MSVC Interlocked) ---------------------- */
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
static inline int64_t load64(volatile int64_t *p) { return InterlockedCompareExchange64(p, 0, 0); }
static inline void store64(volatile int64_t *p, int64_t v) { InterlockedExchange64(p, v); }
static inline int cas64(volatile int64_t *p, int64_t expect, int64_t v)
{
    return InterlockedCompareExchange64(p, v, expect) == expect;
}
static inline int load32(volatile long *p) { return (int)InterlockedCompareExchange(p, 0, 0); }
static inline void store32(volatile long *p, int v) { InterlockedExchange(p, v); }
static inline int add32(volatile long *p, int v) { return (int)InterlockedExchangeAdd(p, v) + v; }
static inline void relax(void) { _mm_pause(); }
#else
static inline int64_t load64(volatile int64_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void store64(volatile int64_t *p, int64_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline int cas64(volatile int64_t *p, int64_t expect, int64_t v)
{
    return __atomic_compare_exchange_n(p, &expect, v, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
static inline int load32(volatile int *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void store32(volatile int *p, int v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline int add32(volatile int *p, int v) { return __atomic_add_fetch(p, v, __ATOMIC_SEQ_CST); }
static inline void relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}
#endif

#if defined(_MSC_VER) && !defined(__clang__)
typedef volatile long counter;
#else
typedef volatile int counter;
#endif

/* ---- the platform's threads, lock and condition variable ------------------------------- */
#if defined(_WIN32)
typedef CRITICAL_SECTION lock_t;
typedef CONDITION_VARIABLE cond_t;
static void lock_init(lock_t *m) { InitializeCriticalSection(m); }
static void lock(lock_t *m) { EnterCriticalSection(m); }
static int try_lock(lock_t *m) { return TryEnterCriticalSection(m) != 0; }
static void unlock(lock_t *m) { LeaveCriticalSection(m); }
static void cond_init(cond_t *c) { InitializeConditionVariable(c); }
static void cond_wait(cond_t *c, lock_t *m) { SleepConditionVariableCS(c, m, INFINITE); }
static void cond_broadcast(cond_t *c) { WakeAllConditionVariable(c); }
static void yield_cpu(void) { SwitchToThread(); }
static double seconds(void)
{
    LARGE_INTEGER f, t;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&t);
    return (double)t.QuadPart / (double)f.QuadPart;
}
#else
typedef pthread_mutex_t lock_t;
typedef pthread_cond_t cond_t;
static void lock_init(lock_t *m) { pthread_mutex_init(m, NULL); }
static void lock(lock_t *m) { pthread_mutex_lock(m); }
static int try_lock(lock_t *m) { return pthread_mutex_trylock(m) == 0; }
static void unlock(lock_t *m) { pthread_mutex_unlock(m); }
static void cond_init(cond_t *c) { pthread_cond_init(c, NULL); }
static void cond_wait(cond_t *c, lock_t *m) { pthread_cond_wait(c, m); }
static void cond_broadcast(cond_t *c) { pthread_cond_broadcast(c); }
static void yield_cpu(void) { sched_yield(); }
static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
#endif

/* A worker spins this long for the next region before it sleeps: a training loop's
 * regions come microseconds apart, a sleeping worker costs a wake-up (~5-20 us). Past
 * the first YIELD_AFTER it yields the core at each check, so that on a loaded machine
 * its spinning does not take the time of whoever else could run there (the caller
 * included). The caller likewise spins for the tasks workers hold for WAIT_SECONDS,
 * then sleeps until the last is done: a preempted worker is then pulled onto the core
 * the caller leaves idle, instead of waiting for a time slice on its own. */
#define SPIN_SECONDS 100e-6
#define YIELD_AFTER 10e-6
#define WAIT_SECONDS 20e-6

/* A region's unclaimed tasks: bit t set while task t (< 64) is not yet claimed. */
static struct {
    int ready;               /* locks initialised */
    lock_t region;           /* held by the caller running a region */
    lock_t sleep;            /* with `wake`: sleeping workers */
    cond_t wake;
    counter sleepers;
    counter threads;         /* threads a region uses, the caller included */
    int started;             /* workers created (ids 1..started) */
    counter generation;      /* bumped by each region: what sleeping workers wait for */
    volatile int64_t unclaimed;
    counter n_tasks;         /* the region's task count, function and context */
    fnn_task_fn fn;
    void *ctx;
    counter done;            /* tasks finished in this region */
    counter caller_asleep;   /* the caller sleeps on `finished` until done == n_tasks */
    counter caller_cpu;      /* the CPU the caller woke sleeping workers from (or -1) */
    cond_t finished;
    counter error_task;      /* the lowest failing task index (n_tasks: none) */
    int error_code;
} pool;

static int cpu_count(void)
{
#if defined(_WIN32)
    DWORD_PTR process, system;
    if (GetProcessAffinityMask(GetCurrentProcess(), &process, &system)) {
        int n = 0;
        for (; process; process &= process - 1) n++;
        if (n > 0) return n;
    }
    SYSTEM_INFO info;
    GetSystemInfo(&info);
    return (int)info.dwNumberOfProcessors > 0 ? (int)info.dwNumberOfProcessors : 1;
#else
#if defined(__linux__) && defined(CPU_COUNT)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
#endif
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
#endif
}

/* A worker woken from its sleep is often placed on the CPU of the thread that woke it
 * (Linux's wake-affine choice), where it then shares one core with the caller for tens of
 * milliseconds before the load balancer moves it: a split step runs at half speed
 * meanwhile. So a woken worker on the caller's CPU steps off it: its affinity without
 * that CPU moves it at once, then its affinity is given back whole (no pinning: under
 * load it can still go anywhere). Two system calls, only after a sleep. */
static void leave_callers_cpu(void)
{
#if defined(__linux__) && defined(CPU_COUNT)
    const int caller = load32(&pool.caller_cpu);
    if (caller < 0 || caller >= CPU_SETSIZE || sched_getcpu() != caller) return;
    cpu_set_t all, others;
    if (sched_getaffinity(0, sizeof all, &all) != 0) return;
    others = all;
    CPU_CLR(caller, &others);
    if (CPU_COUNT(&others) == 0) return;
    if (sched_setaffinity(0, sizeof others, &others) == 0)
        sched_setaffinity(0, sizeof all, &all);
#endif
}

/* FASTNN_NUM_THREADS, else OMP_NUM_THREADS (set to 1 by Dask's nanny for its workers,
 * by job schedulers for their slots), else the CPUs this process may use; at most
 * FNN_MAX_THREADS. */
static int default_threads(void)
{
    static const char *const vars[] = {"FASTNN_NUM_THREADS", "OMP_NUM_THREADS"};
    for (int i = 0; i < 2; i++) {
        const char *v = getenv(vars[i]);
        if (!v || !*v) continue;
        char *end = NULL;
        const long n = strtol(v, &end, 10);
        if (*end == '\0' && n >= 1) return n < FNN_MAX_THREADS ? (int)n : FNN_MAX_THREADS;
    }
    const int n = cpu_count();
    return n < FNN_MAX_THREADS ? n : FNN_MAX_THREADS;
}

/* Claims task t if nobody has: clears its bit. */
static int claim(int t)
{
    for (;;) {
        const int64_t m = load64(&pool.unclaimed);
        const uint64_t bit = (uint64_t)1 << t;
        if (!((uint64_t)m & bit)) return 0;
        if (cas64(&pool.unclaimed, m, (int64_t)((uint64_t)m & ~bit))) return 1;
    }
}

static void run(int t)
{
    const int code = pool.fn(pool.ctx, t);
    if (code) {
        lock(&pool.sleep); /* rare: any lock will do */
        if (t < load32(&pool.error_task)) {
            store32(&pool.error_task, t);
            pool.error_code = code;
        }
        unlock(&pool.sleep);
    }
    if (add32(&pool.done, 1) == load32(&pool.n_tasks) && load32(&pool.caller_asleep)) {
        lock(&pool.sleep);
        cond_broadcast(&pool.finished);
        unlock(&pool.sleep);
    }
}

/* Thread `id` of `threads` (0: the caller) runs its own tasks, t = id, id + threads, ...,
 * then any task still unclaimed. Own tasks first keep each task's data in one core's
 * caches from region to region (a step's shard, an optimizer range: the same thread
 * every step while all threads keep up); taking the rest means that nobody waits for a
 * thread that was slow to wake or was preempted. The function and context are read only
 * after a claim succeeded: the region cannot end (and the next overwrite them) before
 * that task is counted done, and the claim bits are the last thing a region publishes. */
static void run_tasks(int id, int threads)
{
    const int n = load32(&pool.n_tasks); /* maybe the last region's: only a hint */
    for (int t = id; t < n; t += threads)
        if (claim(t)) run(t);
    for (;;) {
        const int64_t m = load64(&pool.unclaimed);
        if (!m) return;
        int t = 0;
        while (!((uint64_t)m & ((uint64_t)1 << t))) t++;
        if (claim(t)) run(t);
    }
}

#if defined(_WIN32)
static unsigned __stdcall worker(void *arg)
#else
static void *worker(void *arg)
#endif
{
    const int id = (int)(intptr_t)arg;
    (void)fnn_fpu_flush_denormals(); /* for good: this thread runs only fastnn's kernels */
    int seen = load32(&pool.generation);
    for (;;) {
        double deadline = 0.0;
        int spins = 0;
        while (load32(&pool.generation) == seen) {
            relax();
            if (++spins & 63) continue;
            const double now = seconds();
            if (deadline == 0.0) {
                deadline = now + SPIN_SECONDS;
            } else if (now < deadline && now > deadline - (SPIN_SECONDS - YIELD_AFTER)) {
                yield_cpu();
            } else if (now >= deadline) {
                lock(&pool.sleep);
                add32(&pool.sleepers, 1);
                while (load32(&pool.generation) == seen) cond_wait(&pool.wake, &pool.sleep);
                add32(&pool.sleepers, -1);
                unlock(&pool.sleep);
                leave_callers_cpu();
            }
        }
        seen = load32(&pool.generation);
        const int threads = load32(&pool.threads);
        if (id < threads) run_tasks(id, threads);
    }
#if defined(_WIN32)
    return 0;
#else
    return NULL;
#endif
}

#if !defined(_WIN32)
/* fork(): the child has only the forking thread. Holding the region lock across the fork
 * keeps the child's pool data consistent; the child then forgets its (absent) workers. */
static void before_fork(void) { lock(&pool.region); }
static void after_fork_parent(void) { unlock(&pool.region); }
static void after_fork_child(void)
{
    lock_init(&pool.region);
    lock_init(&pool.sleep);
    cond_init(&pool.wake);
    cond_init(&pool.finished);
    pool.sleepers = 0;
    pool.caller_asleep = 0;
    pool.started = 0;
}
#endif

/* One-time set-up (the first call comes with the GIL held, from the module's import). */
static void init(void)
{
    if (pool.ready) return;
    lock_init(&pool.region);
    lock_init(&pool.sleep);
    cond_init(&pool.wake);
    cond_init(&pool.finished);
    pool.threads = default_threads();
    pool.caller_cpu = -1;
#if !defined(_WIN32)
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
#endif
    pool.ready = 1;
}

/* Creates workers up to threads - 1 (called with the region lock held). 0, or -1 if the
 * system refused a thread (the region then runs with the workers it has). */
static int start_workers(int want)
{
    while (pool.started < want - 1) {
        const int id = pool.started + 1;
#if defined(_WIN32)
        uintptr_t h = _beginthreadex(NULL, 0, worker, (void *)(intptr_t)id, 0, NULL);
        if (!h) return -1;
        CloseHandle((HANDLE)h);
#else
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int rc = pthread_create(&t, &attr, worker, (void *)(intptr_t)id);
        pthread_attr_destroy(&attr);
        if (rc) return -1;
#endif
        pool.started = id;
    }
    return 0;
}

int fnn_pool_threads(void)
{
    init();
    return load32(&pool.threads);
}

int fnn_pool_cpu_count(void) { return cpu_count(); }

int fnn_pool_set_threads(int n)
{
    init();
    if (n < 1 || n > FNN_MAX_THREADS) return -1;
    store32(&pool.threads, n);
    return 0;
}

int fnn_pool_run(fnn_task_fn fn, void *ctx, int n_tasks)
{
    init();
    if (n_tasks <= 0) return 0;
    const int threads = load32(&pool.threads);
    if (threads <= 1 || n_tasks == 1 || n_tasks > 64 || !try_lock(&pool.region)) {
        /* no pool, or another region is running: the caller runs every task, in order */
        int first = 0;
        for (int t = 0; t < n_tasks; t++) {
            const int code = fn(ctx, t);
            if (code && !first) first = code;
        }
        return first;
    }
    start_workers(threads);
    pool.fn = fn;
    pool.ctx = ctx;
    store32(&pool.n_tasks, n_tasks);
    store32(&pool.done, 0);
    store32(&pool.error_task, n_tasks);
    pool.error_code = 0;
    /* the claim bits last: a worker still looking at the previous region can only claim
     * a task of this one, with this one's function and context */
    store64(&pool.unclaimed, n_tasks == 64 ? -1 : (int64_t)(((uint64_t)1 << n_tasks) - 1));
    add32(&pool.generation, 1);
    if (load32(&pool.sleepers) > 0) {
#if defined(__linux__) && defined(CPU_COUNT)
        store32(&pool.caller_cpu, sched_getcpu());
#endif
        lock(&pool.sleep);
        cond_broadcast(&pool.wake);
        unlock(&pool.sleep);
    }
    run_tasks(0, threads);
    /* tasks claimed by workers are running: wait for them, then sleep (above) */
    double deadline = 0.0;
    for (int spins = 1; load32(&pool.done) < n_tasks; spins++) {
        relax();
        if (spins & 63) continue;
        const double now = seconds();
        if (deadline == 0.0) {
            deadline = now + WAIT_SECONDS;
        } else if (now >= deadline) {
            lock(&pool.sleep);
            store32(&pool.caller_asleep, 1);
            while (load32(&pool.done) < n_tasks) cond_wait(&pool.finished, &pool.sleep);
            store32(&pool.caller_asleep, 0);
            unlock(&pool.sleep);
        }
    }
    const int code = load32(&pool.error_task) < n_tasks ? pool.error_code : 0;
    unlock(&pool.region);
    return code;
}

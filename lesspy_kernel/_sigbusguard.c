/*
 * A SIGBUS on a lane mapping is an error of that lane, not the end of the process (transport/mapping.py explains the
 * why).
 *
 * Touching a page of a file mapping past the file's end (another process cut the file) raises SIGBUS, whose
 * default action kills the process: a headless server with all its clients, or a whole notebook kernel. The
 * handler installed here looks the faulting address up in a fixed table of the lane mappings Python registered;
 * when it lies in one, a private zero page is mapped over the faulting page (MAP_FIXED, a raw system call), the
 * range's fault count is bumped and the handler returns: the instruction runs again and reads zeros (a write
 * lands in that private page). Python asks `faulted` where it matters and closes the lane, whose files no longer
 * say what the client wrote. Any other SIGBUS goes to the handler installed before (Python's faulthandler, say),
 * or gets the default action back.
 *
 * The handler calls no Python and takes no lock: the table is read with atomic loads only. Linux only (built by
 * setup.py there; optional: without it a cut file is a SIGBUS as before).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SLOTS 16384                       /* ranges registered at once: two per lane, old mappings views hold, and
                                             one per kept block (results: 16 at most; arguments: one per move) */
#define INDEX_BITS 14                     /* a token is (generation << INDEX_BITS) | slot index, never 0 */

enum { FREE = 0, CLAIMED = 1, ACTIVE = 2 };

typedef struct {
    int state;                            /* FREE, CLAIMED (being filled) or ACTIVE (the handler looks at it) */
    uintptr_t start, end;                 /* [start, end) */
    unsigned long generation;             /* bumped when the slot is freed: a stale token finds nothing */
    unsigned long faults;                 /* SIGBUS faults mended in this range */
    int moved;                            /* a kept array's own pages (moved out of a lane file: allocator.py) */
} Slot;

static Slot slots[SLOTS];
static int high;                          /* slots below this may be ACTIVE (the handler scans no further) */
static unsigned long total;               /* faults mended in any range */
static unsigned long moved_total;         /* faults mended in a range of a kept array moved out of a lane file */
static uintptr_t page;
static struct sigaction previous;         /* the action before ours (set before ours is installed) */
static int chaining;                      /* a SIGBUS of no range of ours is being passed on */
static uintptr_t last_passed;             /* the address of the last fault passed on */

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)

static void default_action(int sig, siginfo_t *info)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    if (info == NULL || info->si_code <= 0)
        raise(sig);                       /* a signal sent by someone: send it again (a fault comes again itself) */
}

static void pass_on(int sig, siginfo_t *info, void *context)
{
    int fault = info != NULL && info->si_code > 0;
    uintptr_t at = fault ? (uintptr_t)info->si_addr : 0;
    if (__atomic_exchange_n(&chaining, 1, __ATOMIC_ACQ_REL) ||
        (fault && __atomic_exchange_n(&last_passed, at, __ATOMIC_ACQ_REL) == at)) {
        /* a SIGBUS while one is passed on (a handler before ours that raises it again and chains back to us), or
         * the same fault again after the handler before ours returned (it did not mend it: faulthandler once
         * disabled returns at once, and the fault would come back for ever): the default action, which is what
         * passing it on was going to end in */
        default_action(sig, info);
        return;
    }
    struct sigaction prev = previous;
    if ((prev.sa_flags & SA_SIGINFO) && prev.sa_sigaction != NULL) {
        prev.sa_sigaction(sig, info, context);
    } else if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN && prev.sa_handler != NULL) {
        prev.sa_handler(sig);
    } else {
        /* the default action (or ignoring it) again: a fault happens again when the instruction runs again and
         * then gets it; a sent signal is sent again */
        sigaction(sig, &prev, NULL);
        if (!fault)
            raise(sig);
        return;
    }
    __atomic_store_n(&chaining, 0, __ATOMIC_RELEASE);   /* the handler before ours returned: it mended the fault */
}

static void handler(int sig, siginfo_t *info, void *context)
{
    int saved = errno;
    if (info != NULL && info->si_code > 0) {        /* a fault, not a signal sent with kill() or raise() */
        uintptr_t at = (uintptr_t)info->si_addr;
        int n = LOAD(high), mended = 0, moved = 0;
        for (int i = 0; i < n; i++) {
            Slot *s = &slots[i];
            if (LOAD(s->state) != ACTIVE || at < LOAD(s->start) || at >= LOAD(s->end))
                continue;
            if (!mended) {
                uintptr_t low = at & ~(page - 1);
                long r = syscall(SYS_mmap, (void *)low, (size_t)page, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
                if (r != (long)low)
                    break;                          /* no memory for the page: as if it were not ours */
                mended = 1;
            }
            /* every range that holds the address counts it: a range kept for blocks handed over (detach) may
             * overlap a newer mapping at the same address */
            __atomic_fetch_add(&s->faults, 1, __ATOMIC_ACQ_REL);
            moved |= LOAD(s->moved);
        }
        if (mended) {
            __atomic_fetch_add(&total, 1, __ATOMIC_ACQ_REL);
            if (moved)
                __atomic_fetch_add(&moved_total, 1, __ATOMIC_ACQ_REL);
            errno = saved;
            return;
        }
    }
    pass_on(sig, info, context);
    errno = saved;                        /* the interrupted code's errno, whatever the handler before ours did */
}

/* Our handler, installed unless it already is; the action it replaces is where other faults go. */
static int install(void)
{
    struct sigaction current;
    if (sigaction(SIGBUS, NULL, &current) != 0)
        return -1;
    if ((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == handler)
        return 0;
    previous = current;
    struct sigaction ours;
    memset(&ours, 0, sizeof ours);
    ours.sa_sigaction = handler;
    ours.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&ours.sa_mask);
    if (sigaction(SIGBUS, &ours, NULL) != 0)
        return -1;
    return 1;
}

static PyObject *py_install(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(unused))
{
    int r = install();
    if (r < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyBool_FromLong(r);
}

/* Register [address, address + length): a token (0: the table is full, not guarded). Lock-free and async-signal
 * safe (atomics and sigaction only): _resultalloc calls it without the GIL (its C API, below). */
static unsigned long long guard_range(uintptr_t address, size_t length, int moved)
{
    for (int i = 0; i < SLOTS; i++) {
        int expected = FREE;
        if (!__atomic_compare_exchange_n(&slots[i].state, &expected, CLAIMED, 0, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE))
            continue;
        Slot *s = &slots[i];
        STORE(s->start, address);
        STORE(s->end, address + length);
        STORE(s->faults, 0UL);
        STORE(s->moved, moved);
        int h = LOAD(high);
        while (h < i + 1 && !__atomic_compare_exchange_n(&high, &h, i + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            ;
        STORE(s->state, ACTIVE);
        unsigned long g = LOAD(s->generation);
        return ((unsigned long long)(g + 1) << INDEX_BITS) | (unsigned)i;
    }
    return 0;
}

/* The slot a token names while it is registered; else NULL (unregistered since, or 0: never guarded). */
static Slot *active_slot(unsigned long long token)
{
    Slot *s = &slots[token & (SLOTS - 1)];
    if (token == 0 || LOAD(s->state) != ACTIVE || LOAD(s->generation) + 1 != (token >> INDEX_BITS))
        return NULL;
    return s;
}

/* Forget a range (its pages are about to be unmapped, or were). A stale token does nothing. Lock-free. */
static void unguard(unsigned long long token)
{
    Slot *s = active_slot(token);
    if (s == NULL)
        return;
    int expected = ACTIVE;                /* one of two racing unregisters frees it */
    if (!__atomic_compare_exchange_n(&s->state, &expected, CLAIMED, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return;
    if (LOAD(s->generation) + 1 != (token >> INDEX_BITS)) {   /* freed and taken again meanwhile: not ours */
        STORE(s->state, ACTIVE);
        return;
    }
    STORE(s->start, (uintptr_t)0);        /* the handler stopped looking at it: its range may change */
    STORE(s->end, (uintptr_t)0);
    __atomic_fetch_add(&s->generation, 1, __ATOMIC_ACQ_REL);
    STORE(s->state, FREE);
}

/* For _resultalloc (a capsule, _C_API): kept arrays moved out of a lane file are registered while they are mapped,
 * by the code that maps and unmaps them, which may run without the GIL. */
typedef struct {
    unsigned long long (*guard)(uintptr_t address, size_t length, int moved);
    void (*unguard)(unsigned long long token);
} GuardApi;

static unsigned long long api_guard(uintptr_t address, size_t length, int moved)
{
    if (install() < 0)
        return 0;
    return guard_range(address, length, moved);
}

static GuardApi api = {api_guard, unguard};

static PyObject *py_register(PyObject *Py_UNUSED(self), PyObject *args)
{
    unsigned long long address, length;
    int moved = 0;
    if (!PyArg_ParseTuple(args, "KK|p", &address, &length, &moved))
        return NULL;
    if (install() < 0)                    /* again: another handler (faulthandler.enable()) may have come since */
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromUnsignedLongLong(guard_range((uintptr_t)address, (size_t)length, moved));
}

static int token_of(PyObject *arg, unsigned long long *token)
{
    *token = PyLong_AsUnsignedLongLong(arg);
    return !(*token == (unsigned long long)-1 && PyErr_Occurred());
}

static PyObject *py_unregister(PyObject *Py_UNUSED(self), PyObject *arg)
{
    unsigned long long token;
    if (!token_of(arg, &token))
        return NULL;
    unguard(token);
    Py_RETURN_NONE;
}

static PyObject *py_faulted(PyObject *Py_UNUSED(self), PyObject *arg)
{
    unsigned long long token;
    if (!token_of(arg, &token))
        return NULL;
    Slot *s = active_slot(token);
    return PyLong_FromUnsignedLong(s == NULL ? 0UL : LOAD(s->faults));
}

static PyObject *py_alive(PyObject *Py_UNUSED(self), PyObject *arg)
{
    unsigned long long token;
    if (!token_of(arg, &token))
        return NULL;
    return PyBool_FromLong(active_slot(token) != NULL);
}

static PyObject *py_ranges(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(unused))
{
    PyObject *list = PyList_New(0);
    int n = LOAD(high);
    for (int i = 0; list && i < n; i++) {
        Slot *s = &slots[i];
        if (LOAD(s->state) != ACTIVE)
            continue;
        PyObject *t = Py_BuildValue("(KKi)", (unsigned long long)LOAD(s->start), (unsigned long long)LOAD(s->end),
                                    LOAD(s->moved));
        if (!t || PyList_Append(list, t) < 0) {
            Py_XDECREF(t);
            Py_CLEAR(list);
        } else
            Py_DECREF(t);
    }
    return list;
}

/* Read one byte of each page of a kept array's registered range (moved=1; others are skipped): a page Linux took
 * away because its file was truncated faults now and becomes a zero page, before the file is given its size back
 * (after which the page would show the file's new bytes instead of faulting). Returns the faults mended. */
static PyObject *py_settle(PyObject *Py_UNUSED(self), PyObject *arg)
{
    unsigned long long token;
    if (!token_of(arg, &token))
        return NULL;
    Slot *s = active_slot(token);
    if (s == NULL || !LOAD(s->moved))
        return PyLong_FromLong(0);
    if (install() < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    unsigned long before = LOAD(s->faults);
    uintptr_t start = LOAD(s->start) & ~(page - 1), end = LOAD(s->end);
    for (uintptr_t p = start; p < end; p += page)
        (void)*(volatile const char *)p;
    return PyLong_FromUnsignedLong(LOAD(s->faults) - before);
}

static PyObject *py_moved_total(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(unused))
{
    return PyLong_FromUnsignedLong(LOAD(moved_total));
}

static PyObject *py_total(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(unused))
{
    return PyLong_FromUnsignedLong(LOAD(total));
}

static PyMethodDef methods[] = {
    {"install", py_install, METH_NOARGS,
     "install() -> bool: put the SIGBUS handler in place (True when it was not; register() does it too)."},
    {"register", py_register, METH_VARARGS,
     "register(address, length, moved=False) -> token: a fault in this range is mended (0: the table is full, not "
     "guarded); `moved`: a kept array's own pages (moved_total counts its faults)."},
    {"unregister", py_unregister, METH_O, "unregister(token): the range is unmapped; forget it."},
    {"faulted", py_faulted, METH_O, "faulted(token) -> faults mended in that range since it was registered."},
    {"total", py_total, METH_NOARGS, "total() -> faults mended in any range (a cheap first look)."},
    {"moved_total", py_moved_total, METH_NOARGS,
     "moved_total() -> faults mended in ranges registered as a kept array's own pages (moved=True)."},
    {"alive", py_alive, METH_O, "alive(token) -> whether that range is still registered."},
    {"settle", py_settle, METH_O,
     "settle(token) -> faults mended: touch each page of a kept array's range (before its cut file grows again)."},
    {"ranges", py_ranges, METH_NOARGS, "ranges() -> [(start, end, moved), ...]: the ranges registered now."},
    {NULL, NULL, 0, NULL},
};

/* The table and the handler are process-wide C state, not module state: the signal handler has no module at hand,
 * and _resultalloc registers through the C API without one. */
static int exec_module(PyObject *m)
{
    long size = sysconf(_SC_PAGESIZE);
    page = (uintptr_t)(size > 0 ? size : 4096);
    if (PyModule_AddIntConstant(m, "SLOTS", SLOTS) < 0)
        return -1;
    PyObject *capsule = PyCapsule_New(&api, "lesspy_kernel._sigbusguard._C_API", NULL);
    if (!capsule)
        return -1;
    if (PyModule_AddObject(m, "_C_API", capsule) < 0) {   /* steals `capsule` on success only */
        Py_DECREF(capsule);
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, exec_module},
#ifdef Py_mod_multiple_interpreters
    /* one signal handler and one table per process */
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_USED},        /* install() swaps the handler before ours with the GIL held */
#endif
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_sigbusguard",
    .m_doc = "A SIGBUS on a lane mapping becomes an error of that lane (see transport/mapping.py).",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = module_slots,
};

PyMODINIT_FUNC PyInit__sigbusguard(void)
{
    return PyModuleDef_Init(&module_def);
}

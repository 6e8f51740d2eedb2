/*
 * The NumPy data allocator of lesspy calls that return an NdArray (allocator.py explains the why).
 *
 * While `begin` is in effect on a thread, the first allocation of at least MIN_BYTES that fits `room` is placed
 * at `place` (where a top-level NDARRAY reply's data goes in the lane's response mapping); everything else comes
 * from the C library. Blocks placed there are remembered in a small table so that `free` knows them, also when
 * the array dies later on another thread. No Python code runs inside the allocator functions, and they build no
 * Python object: NumPy calls them while an exception may be set, or without the GIL. The functions Python calls
 * build their Python objects only after letting go of the table's mutex, which the free hook takes: building one
 * may free an array (the GC), whose free hook would then wait for that mutex for ever.
 *
 * Built against NumPy's headers (NEP 49's PyDataMem_Handler and PyDataMem_SetHandler, NumPy >= 1.22):
 * import_array, when the module is executed, checks that the running NumPy has that ABI and at least that C-API
 * feature version, or the import fails with an ImportError that says which.
 *
 * The block table, its mutex and the per-thread call are process-wide C state, not module state: NumPy calls the
 * hooks with no module at hand, an array may outlive every module object (its free hook still has to find its
 * block), and os.fork copies them all. The module's state holds the Python objects: the handler's capsule.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_API_VERSION
#define NPY_TARGET_VERSION NPY_1_22_API_VERSION      /* the first NumPy with PyDataMem_SetHandler (NEP 49) */
#include <numpy/arrayobject.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <fcntl.h>
#include <errno.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 0x01
#endif
#ifndef FALLOC_FL_PUNCH_HOLE
#define FALLOC_FL_PUNCH_HOLE 0x02
#endif

#define MIN_BYTES (256 * 1024)
#define MAX_BLOCKS 4096
#define SCOPE_NAME "lesspy_kernel._resultalloc.scope"

/* LIVE: in a lane's response mapping (MAP_SHARED with C#). MOVED: its pages are private now (move_out). GONE: moved
 * and freed, its pages still part of an old mapping Python keeps (reap() tells Python it may close it). */
enum { LIVE = 1, MOVED = 2, GONE = 3 };

typedef struct {
    uintptr_t address;
    size_t size;
    int state;
    uintptr_t low;                        /* the whole pages the block lies in */
    size_t length;
    int owned;                            /* MOVED: those pages are a mapping of their own, unmapped when it is freed */
    unsigned long long token;             /* MOVED: the SIGBUS guard's registration of its pages (0: none) */
} Block;

/* The SIGBUS guard's C API (_sigbusguard.c, given by allocator.py): a moved block's pages are still a MAP_PRIVATE
 * mapping of its lane file, and Linux takes even private copies away when the file is truncated (the next touch is a
 * SIGBUS): they stay registered with the guard for exactly as long as they are mapped. */
typedef struct {
    unsigned long long (*guard)(uintptr_t address, size_t length, int moved);
    void (*unguard)(unsigned long long token);
} GuardApi;

static GuardApi *guard_api;

static unsigned long long guard(uintptr_t address, size_t length)
{
    return guard_api ? guard_api->guard(address, length, 1) : 0;
}

static void unguard(unsigned long long token)
{
    if (guard_api && token)
        guard_api->unguard(token);
}

static Block blocks[MAX_BLOCKS];
/* Written with the lock held, and atomically: the free hook reads it without the lock to skip the table when it is
 * empty (most frees). That read cannot miss a block of ours: the thread freeing an array got its pointer after take()
 * registered the block and released the lock (through the GIL, or whatever else handed the array over), so the
 * acquire load sees that registration's count or a later one. */
static int nblocks;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

#define NBLOCKS_QUICK() __atomic_load_n(&nblocks, __ATOMIC_ACQUIRE)
#define SET_NBLOCKS(n) __atomic_store_n(&nblocks, (n), __ATOMIC_RELEASE)

typedef struct {
    uintptr_t place;
    size_t room;
    int open;
    int reserved;                         /* result_array() took the place: nothing else goes there in this call */
    int force;                            /* result_array(): the next allocation goes to the place, whatever its size */
    unsigned forks;                       /* `forks` when the call began: a forked child's calls place nothing */
} Call;

static __thread Call call;                /* the call this thread runs (the innermost, when begin() nests) */
static __thread unsigned depth;           /* begin()s in effect on this thread */
static unsigned forks;                    /* bumped in a forked child: calls its parent began place nothing there */

/* What begin() returns and end() takes (a capsule): the state to restore, so that begin()/end() nest. */
typedef struct {
    Call outer;                           /* this thread's call before begin() */
    PyObject *previous;                   /* NumPy's handler before begin() */
    unsigned depth;                       /* `depth` once begin() was in effect */
    unsigned long thread;
    int ended;
} Scope;

static uintptr_t page_size(void)
{
    static uintptr_t page;
    if (!page)
        page = (uintptr_t)sysconf(_SC_PAGESIZE);
    return page;
}

static int find(uintptr_t address)        /* with the lock held; a GONE block is no longer anybody's */
{
    for (int i = 0; i < nblocks; i++)
        if (blocks[i].address == address && blocks[i].state != GONE)
            return i;
    return -1;
}

static void drop(int i)                   /* with the lock held */
{
    blocks[i] = blocks[nblocks - 1];
    SET_NBLOCKS(nblocks - 1);
}

static void *take(size_t size)
{
    void *result = NULL;
    if (!call.open || size > call.room || call.forks != forks)
        return NULL;
    if (call.force) {
        call.force = 0;                   /* one allocation only: result_array()'s own */
        if (size == 0)
            return NULL;
    } else if (call.reserved || size < MIN_BYTES)
        return NULL;
    pthread_mutex_lock(&lock);
    if (find(call.place) < 0 && nblocks < MAX_BLOCKS) {
        uintptr_t page = page_size();
        Block *b = &blocks[nblocks];
        b->address = call.place;
        b->size = size;
        b->state = LIVE;
        b->low = call.place & ~(page - 1);
        b->length = ((call.place + size + page - 1) & ~(page - 1)) - b->low;
        b->owned = 0;
        b->token = 0;
        SET_NBLOCKS(nblocks + 1);
        result = (void *)call.place;
    }
    pthread_mutex_unlock(&lock);
    return result;
}

static void *lp_malloc(void *ctx, size_t size)
{
    void *p = take(size);
    return p ? p : malloc(size);
}

static void *lp_calloc(void *ctx, size_t nelem, size_t elsize)
{
    void *p;
    if (elsize && nelem > SIZE_MAX / elsize)
        return NULL;
    p = take(nelem * elsize);
    if (p) {
        memset(p, 0, nelem * elsize);     /* the mapping holds an earlier reply */
        return p;
    }
    return calloc(nelem, elsize);
}

static void lp_free(void *ctx, void *ptr, size_t size)
{
    if (ptr && NBLOCKS_QUICK()) {
        pthread_mutex_lock(&lock);
        int i = find((uintptr_t)ptr);
        if (i >= 0) {
            if (blocks[i].state == LIVE)
                drop(i);
            else if (blocks[i].owned) {   /* its own private pages: nothing else lies in them */
                unguard(blocks[i].token); /* first: nothing else may be mapped there, and then be mended */
                munmap((void *)blocks[i].low, blocks[i].length);
                drop(i);
            } else {
                unguard(blocks[i].token); /* its old mapping (guarded as a whole) is released by reap() */
                blocks[i].token = 0;
                blocks[i].state = GONE;
            }
            pthread_mutex_unlock(&lock);
            return;
        }
        pthread_mutex_unlock(&lock);
    }
    free(ptr);
}

static void *lp_realloc(void *ctx, void *ptr, size_t new_size)
{
    size_t old = 0;
    int known = 0;
    if (ptr && NBLOCKS_QUICK()) {
        pthread_mutex_lock(&lock);
        int i = find((uintptr_t)ptr);
        if (i >= 0) {
            known = 1;
            old = blocks[i].size;
        }
        pthread_mutex_unlock(&lock);
    }
    if (!known)
        return realloc(ptr, new_size);
    void *q = malloc(new_size ? new_size : 1);
    if (!q)
        return NULL;
    memcpy(q, ptr, old < new_size ? old : new_size);
    lp_free(ctx, ptr, old);
    return q;
}

static PyDataMem_Handler handler = {"lesspy", 1, {NULL, lp_malloc, lp_calloc, lp_realloc, lp_free}};

typedef struct {
    PyObject *handler;                    /* the capsule of `handler` that PyDataMem_SetHandler takes */
} State;

static State *state_of(PyObject *module)
{
    return (State *)PyModule_GetState(module);
}

/* ------------------------------------------------------------------ the module */

static void scope_free(PyObject *capsule)
{
    Scope *s = (Scope *)PyCapsule_GetPointer(capsule, SCOPE_NAME);
    if (s) {
        Py_XDECREF(s->previous);
        PyMem_Free(s);
    }
}

/* begin(place, room) -> scope: this thread's call places its big arrays at `place` until end(scope), which gives
 * back the state before it (this thread's outer call, NumPy's handler before). begin()s nest: each end() takes the
 * scope of the innermost begin() still in effect on its thread, or raises RuntimeError and changes nothing. */
static PyObject *py_begin(PyObject *module, PyObject *args)
{
    unsigned long long place, room;
    if (!PyArg_ParseTuple(args, "KK", &place, &room))
        return NULL;
    Scope *s = (Scope *)PyMem_Calloc(1, sizeof(Scope));
    if (!s)
        return PyErr_NoMemory();
    PyObject *scope = PyCapsule_New(s, SCOPE_NAME, scope_free);
    if (!scope) {
        PyMem_Free(s);
        return NULL;
    }
    s->outer = call;
    s->thread = PyThread_get_thread_ident();
    s->depth = depth + 1;
    call.place = (uintptr_t)place;
    call.room = (size_t)room;
    call.reserved = 0;
    call.force = 0;
    call.forks = forks;
    call.open = 1;
    s->previous = PyDataMem_SetHandler(state_of(module)->handler);
    if (!s->previous) {
        call = s->outer;
        Py_DECREF(scope);
        return NULL;
    }
    depth++;
    return scope;
}

static PyObject *py_end(PyObject *module, PyObject *scope)
{
    Scope *s = PyCapsule_IsValid(scope, SCOPE_NAME) ? (Scope *)PyCapsule_GetPointer(scope, SCOPE_NAME) : NULL;
    if (!s) {
        PyErr_SetString(PyExc_TypeError, "end() takes what begin() returned");
        return NULL;
    }
    if (s->ended) {
        PyErr_SetString(PyExc_RuntimeError, "end(): this begin() has ended already");
        return NULL;
    }
    if (s->thread != PyThread_get_thread_ident()) {
        PyErr_SetString(PyExc_RuntimeError, "end() runs on another thread than its begin()");
        return NULL;
    }
    if (s->depth != depth) {
        PyErr_Format(PyExc_RuntimeError, "end() of an outer begin() while %u inner one(s) are in effect on this "
                     "thread: end the innermost first", depth - s->depth);
        return NULL;
    }
    PyObject *ours = PyDataMem_SetHandler(s->previous);
    if (!ours)
        return NULL;
    Py_DECREF(ours);
    call = s->outer;
    depth--;
    s->ended = 1;
    Py_CLEAR(s->previous);
    Py_RETURN_NONE;
}

static PyObject *py_depth(PyObject *module, PyObject *unused)
{
    return PyLong_FromUnsignedLong(depth);
}

/* result_array(): the next allocation of this thread's call (its array's data) goes to `place`, whatever its size,
 * and nothing else goes there for the rest of the call. */
static PyObject *py_place_next(PyObject *module, PyObject *args)
{
    unsigned long long place, room;
    if (!PyArg_ParseTuple(args, "KK", &place, &room))
        return NULL;
    if (!call.open)
        Py_RETURN_FALSE;
    call.place = (uintptr_t)place;
    call.room = (size_t)room;
    call.force = 1;
    call.reserved = 1;
    Py_RETURN_TRUE;
}

static PyObject *py_unforce(PyObject *module, PyObject *unused)
{
    call.force = 0;
    Py_RETURN_NONE;
}

static PyObject *py_reserved(PyObject *module, PyObject *unused)
{
    return PyBool_FromLong(call.open && call.reserved);
}

static PyObject *py_live(PyObject *module, PyObject *arg)
{
    uintptr_t address = (uintptr_t)PyLong_AsUnsignedLongLong(arg);
    size_t size = 0;
    if (PyErr_Occurred())
        return NULL;
    pthread_mutex_lock(&lock);
    int i = find(address);
    if (i >= 0 && blocks[i].state == LIVE)
        size = blocks[i].size;
    pthread_mutex_unlock(&lock);
    return PyLong_FromSize_t(size);
}

/* For tests (tests/test_allocator.py): the next MAP_FIXED mmap of move_out or move_pages fails as one that Linux
 * failed after discarding the range it was to replace (mmap unmaps what lies there first), with ENOMEM. */
static int fail_next_map;

static PyObject *py_fail_next_map(PyObject *module, PyObject *unused)
{
    fail_next_map = 1;
    Py_RETURN_NONE;
}

/* mmap(low, length, PROT_READ | PROT_WRITE, flags | MAP_FIXED, fd, offset): 0, or -1 with errno set. */
static int map_fixed(uintptr_t low, size_t length, int flags, int fd, off_t offset)
{
    if (fail_next_map) {
        fail_next_map = 0;
        munmap((void *)low, length);
        errno = ENOMEM;
        return -1;
    }
    void *at = mmap((void *)low, length, PROT_READ | PROT_WRITE, flags | MAP_FIXED, fd, offset);
    if (at == (void *)low)
        return 0;
    if (at != MAP_FAILED) {               /* not where asked (never, with MAP_FIXED): not ours to keep */
        munmap(at, length);
        errno = EINVAL;
    }
    return -1;
}

/* After a MAP_FIXED mmap over [low, low + length) of a lane file's shared mapping failed (errno `err`): Linux may
 * have discarded the range before failing, and NumPy may point into it. When any of it is unmapped, the file's pages
 * are mapped there again as they were (MAP_SHARED, the same offsets: the same bytes); failing that, zero pages, so
 * that a touch reads zeros rather than crashing. Sets an OSError saying what was attempted and what the pages are
 * now. */
static PyObject *map_failed(int err, const char *what, uintptr_t low, size_t length, int fd, off_t offset)
{
    const char *now;
    if (msync((void *)low, length, MS_ASYNC) == 0)
        now = "its pages stay as they were (mapped, the same bytes)";
    else if (mmap((void *)low, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, offset) == (void *)low)
        now = "its pages, which that failure had unmapped, were mapped again as they were (the same bytes)";
    else if (mmap((void *)low, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS, -1, 0)
             == (void *)low)
        now = "its pages, which that failure had unmapped, could not be mapped again: they read as zeros now";
    else
        now = "its pages, which that failure had unmapped, could not be mapped again: touching them is a crash";
    PyObject *text = PyUnicode_FromFormat("%s: mmap of %zu bytes at %p failed (%s); %s", what, length, (void *)low,
                                          strerror(err), now);
    if (text) {
        PyObject *error = PyObject_CallFunction(PyExc_OSError, "iO", err, text);
        if (error) {
            PyErr_SetObject(PyExc_OSError, error);
            Py_DECREF(error);
        }
        Py_DECREF(text);
    }
    return NULL;
}

/* Make the pages [low, low + length), a MAP_SHARED mapping of the file `fd` from `offset`, private copies of
 * themselves, without copying under them: mapped again MAP_PRIVATE from the same file offsets, in one mmap (MAP_FIXED:
 * a thread touching them meanwhile waits in its page fault, none finds them unmapped), then made private copies by
 * the kernel (MADV_POPULATE_WRITE: a write fault on each page, which copies the file's page as it is at that moment,
 * with every write made before). A thread writing them meanwhile writes either the file's page before it is copied,
 * or its own copy after: no write is lost, nothing changes a byte. 0, or -1 with errno set (map_failed() then). */
static int privatise_in_place(uintptr_t low, size_t length, int fd, off_t offset)
{
    if (map_fixed(low, length, MAP_PRIVATE, fd, offset) != 0)
        return -1;
    if (madvise((void *)low, length, MADV_POPULATE_WRITE) != 0) {
        /* an older kernel: a write fault on each page by an atomic add of 0, which changes no byte and, being
         * one atomic read-modify-write, cannot undo a concurrent store to the same word */
        for (uintptr_t p = low; p < low + length; p += page_size())
            __atomic_fetch_add((volatile uint64_t *)p, 0, __ATOMIC_SEQ_CST);
    }
    return 0;
}

/* The first fields of CPython's mmap object (Modules/mmapmodule.c), the same in every version since 3.0. */
typedef struct {
    PyObject_HEAD
    char *data;
    Py_ssize_t size;
} MmapHead;

/* Give the live block at `place` (in the mapping of the response file `fd` at `base`) pages of its own
 * (privatise_in_place).
 *
 * `old` is the Python mmap object of that mapping, which Python no longer uses (Mapping.detach). When nothing
 * else holds it (Python checked), the rest of its pages are unmapped now and it is told it maps nothing (so
 * closing it only closes its descriptor): the block then pins only its own pages, unmapped when it is freed.
 * The block's pages stay a MAP_PRIVATE mapping of the file, whose private copies Linux takes away if the file is
 * truncated later: they are registered with the SIGBUS guard (a cut reads zeros, never a crash) until the block is
 * freed; when `old` is released, its own registration (`old_token`) is dropped before the rest is unmapped.
 * Returns (size moved, whether `old` was released that way, the block's guard token). On failure (OSError) the
 * block is still LIVE in `old`, whose pages stay mapped: Python keeps `old` for as long as the process lives. */
static PyObject *py_move_out(PyObject *module, PyObject *args)
{
    unsigned long long place, base, old_token = 0, token = 0;
    int fd, owned = 0;
    size_t size = 0;
    PyObject *old;
    if (!PyArg_ParseTuple(args, "KKiO|K", &place, &base, &fd, &old, &old_token))
        return NULL;
    MmapHead *m = old != Py_None && strcmp(Py_TYPE(old)->tp_name, "mmap.mmap") == 0 ? (MmapHead *)old : NULL;
    uintptr_t page = page_size();
    pthread_mutex_lock(&lock);
    int i = find((uintptr_t)place);
    if (i < 0 || blocks[i].state != LIVE) {
        pthread_mutex_unlock(&lock);
        return Py_BuildValue("(nOK)", (Py_ssize_t)0, Py_False, 0ULL);
    }
    Block *b = &blocks[i];
    if (b->low < (uintptr_t)base) {
        pthread_mutex_unlock(&lock);
        PyErr_SetString(PyExc_ValueError, "the block does not lie in the mapping it is said to be in");
        return NULL;
    }
    uintptr_t low = b->low;
    size_t length = b->length;
    off_t offset = (off_t)(low - (uintptr_t)base);
    if (privatise_in_place(low, length, fd, offset) != 0) {
        int err = errno;
        pthread_mutex_unlock(&lock);      /* the block stays LIVE in `old` */
        return map_failed(err, "could not give a result array kept after its call pages of its own, so it goes on "
                          "sharing its lane's response file, whose later replies show through it (copy it, "
                          "np.array(a), to keep its values)", low, length, fd, offset);
    }
    b->state = MOVED;
    b->owned = 0;
    b->token = guard(low, length);        /* its pages, guarded until it is freed (lp_free) */
    if (m) {
        uintptr_t start = (uintptr_t)m->data, end = start + (uintptr_t)m->size;
        if (start == (uintptr_t)base && m->size > 0 && end >= low + length && !(end & (page - 1))) {
            /* the old mapping's range: only the block's pages stay, guarded above. Unregistered first: nothing
             * else may be mapped there, and then be mended. If the first munmap fails (no memory to split the
             * mapping), `old` stays whole and is unmapped when the block is freed (reap): nothing else holds it,
             * so nothing touches its other pages. If the second fails, its tail stays mapped, unused. */
            unguard(old_token);
            if (low == start || munmap((void *)start, low - start) == 0) {
                if (end > low + length)
                    munmap((void *)(low + length), end - (low + length));
                m->data = NULL;           /* closing it now closes its descriptor and unmaps nothing */
                m->size = 0;
                b->owned = 1;
            }
        }
    }
    size = b->size;
    owned = b->owned;
    token = b->token;
    pthread_mutex_unlock(&lock);
    return Py_BuildValue("(nOK)", (Py_ssize_t)size, owned ? Py_True : Py_False, token);
}

/* A request mapping's argument views that Python still refers to after their call (kept in a global, a closure, a
 * generator...): the pages `ranges` of the mapping at `base` (of the request file `fd`, mapped from offset 0) get
 * private copies of their bytes at the same addresses (privatise_in_place: no concurrent write is lost), so later
 * requests written into the file never show through them. The other pages of [base, base + end) become anonymous
 * zero pages (bytes no argument lies in: the gap before in-place data). `old` is the Python mmap object of that
 * mapping, which Python no longer uses (Mapping.detach); when only the argument views' buffer holds it (Python
 * checked), its pages past `end` are unmapped now and it is told it maps [base, base + end) only, which it unmaps
 * when it is freed (with the last argument view); its own descriptor of the file is closed, and its guard
 * registration `old_token` is dropped before the tail is unmapped (Python registered [base, base + end) first).
 * Returns (the bytes made private, whether `old` was cut down that way). On failure (OSError) the pages moved
 * before stay private, the others stay (or are mapped again) as they were. */
static int same_file(int a, int b)
{
    struct stat sa, sb;
    return a >= 0 && fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

typedef struct {                          /* the fields of CPython's mmap object up to its descriptor (Unix, 3.8+) */
    PyObject_HEAD
    char *data;
    Py_ssize_t size;
    Py_ssize_t pos;
    off_t offset;
    Py_ssize_t exports;
    int fd;
} MmapUnix;

static PyObject *py_move_pages(PyObject *module, PyObject *args)
{
    unsigned long long base, end, old_token = 0;
    int fd, released = 0;
    PyObject *old, *ranges;
    if (!PyArg_ParseTuple(args, "KiOKO|K", &base, &fd, &old, &end, &ranges, &old_token))
        return NULL;
    uintptr_t page = page_size();
    PyObject *seq = PySequence_Fast(ranges, "ranges must be a sequence of (start, stop) pairs");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    unsigned long long starts[8], stops[8];
    if (n > 8 || (base & (page - 1)) || (end & (page - 1))) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "move_pages: at most 8 page-aligned ranges in a page-aligned region");
        return NULL;
    }
    unsigned long long last = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "KK", &starts[i], &stops[i])) {
            Py_DECREF(seq);
            return NULL;
        }
        if ((starts[i] & (page - 1)) || (stops[i] & (page - 1)) || starts[i] < last || stops[i] < starts[i]
            || stops[i] > end) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_ValueError, "move_pages: ranges must be sorted, page-aligned, within the region");
            return NULL;
        }
        last = stops[i];
    }
    Py_DECREF(seq);
    size_t moved = 0;
    unsigned long long at = 0;
    for (Py_ssize_t i = 0; i <= n; i++) {
        unsigned long long gap_end = i < n ? starts[i] : end;
        if (gap_end > at) {               /* no argument lies here: zero pages, no file behind them */
            uintptr_t low = (uintptr_t)(base + at);
            if (map_fixed(low, gap_end - at, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != 0)
                return map_failed(errno, "could not map zero pages between the arguments kept after their call",
                                  low, gap_end - at, fd, (off_t)at);
        }
        if (i == n)
            break;
        size_t length = stops[i] - starts[i];
        if (length) {
            /* not a plain copy: C code given an argument's pointer may write it from another thread (an alias of
             * a read-only view), and no such write may be lost. The pages stay a MAP_PRIVATE mapping of the
             * file, whose copies Linux takes away if the file is truncated later: Python keeps them registered
             * with the SIGBUS guard while they are mapped (allocator.move_request) */
            uintptr_t low = (uintptr_t)(base + starts[i]);
            if (privatise_in_place(low, length, fd, (off_t)starts[i]) != 0)
                return map_failed(errno, "could not give arguments kept after their call pages of their own (they "
                                  "go on sharing the request file)", low, length, fd, (off_t)starts[i]);
            moved += length;
        }
        at = stops[i];
    }
    if (old != Py_None && strcmp(Py_TYPE(old)->tp_name, "mmap.mmap") == 0) {
        MmapUnix *m = (MmapUnix *)old;
        uintptr_t start = (uintptr_t)m->data, stop = start + (uintptr_t)m->size;
        if (start == (uintptr_t)base && (unsigned long long)m->size >= end && !(stop & (page - 1))) {
            unguard(old_token);           /* the whole old range: Python registered [base, base + end) before */
            released = 1;
            if (stop > start + end)
                munmap((void *)(start + end), stop - (start + end));
            m->size = (Py_ssize_t)end;    /* freed with the last view: it unmaps exactly what is left */
            if (m->pos > m->size)
                m->pos = m->size;
            if (m->fd != fd && same_file(m->fd, fd)) {
                close(m->fd);             /* its own copy of the file's descriptor: not needed any more */
                m->fd = -1;
            }
        }
    }
    return Py_BuildValue("(nO)", (Py_ssize_t)moved, released ? Py_True : Py_False);
}

/* How many memoryviews share the buffer `mv` was made from (its managed buffer's references). NumPy wraps the
 * buffer of each array it makes from `mv` in a memoryview of its own, sharing that buffer, which views of the
 * array keep alive: so a call's arguments (Mapping.arguments) count 2 when no argument view outlives the call. */
static PyObject *py_views(PyObject *module, PyObject *mv)
{
    if (!PyMemoryView_Check(mv)) {
        PyErr_SetString(PyExc_TypeError, "views() takes a memoryview");
        return NULL;
    }
    return PyLong_FromSsize_t(Py_REFCNT((PyObject *)((PyMemoryViewObject *)mv)->mbuf));
}

static PyObject *py_set_guard(PyObject *module, PyObject *capsule)
{
    GuardApi *api = (GuardApi *)PyCapsule_GetPointer(capsule, "lesspy_kernel._sigbusguard._C_API");
    if (!api)
        return NULL;
    guard_api = api;
    Py_RETURN_NONE;
}

/* The addresses of moved blocks freed since the last reap(). They are taken off the table only once the list that
 * reports them is made: when it cannot be (MemoryError), the next reap() reports them. */
static PyObject *py_reap(PyObject *module, PyObject *unused)
{
    uintptr_t gone[MAX_BLOCKS];
    int n = 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < nblocks; i++)
        if (blocks[i].state == GONE)
            gone[n++] = blocks[i].address;
    pthread_mutex_unlock(&lock);
    PyObject *list = PyList_New(n);
    for (int k = 0; list && k < n; k++) {
        PyObject *a = PyLong_FromSize_t(gone[k]);
        if (!a)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, k, a);
    }
    if (!list)
        return NULL;
    pthread_mutex_lock(&lock);            /* a GONE block changes no more: only this takes it off the table */
    for (int k = 0; k < n; k++)
        for (int i = 0; i < nblocks; i++)
            if (blocks[i].state == GONE && blocks[i].address == gone[k]) {
                drop(i);
                break;
            }
    pthread_mutex_unlock(&lock);
    return list;
}

static PyObject *py_moved(PyObject *module, PyObject *unused)
{
    long n = 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < nblocks; i++)
        if (blocks[i].state != LIVE)
            n++;
    pthread_mutex_unlock(&lock);
    return PyLong_FromLong(n);
}

/* Free the disk (or tmpfs) space of a response file whose lane closed: moved blocks keep the file open (their
 * mappings), not its bytes, since their pages are private copies. */
static PyObject *py_punch(PyObject *module, PyObject *args)
{
    int fd, err = 0;
    long long offset, length;
    if (!PyArg_ParseTuple(args, "iLL", &fd, &offset, &length))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length) != 0)
        err = errno;                      /* before anything else can change errno (taking the GIL back) */
    Py_END_ALLOW_THREADS
    if (err) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

/* os.register_at_fork: blocks in response mappings are MAP_SHARED, so a child would share them with this process
 * and with C#. The child (one thread, before Python code runs there) gives each its own pages holding the same
 * bytes; moved blocks are private already (the kernel copies them on write, as for any array). Until the child
 * says it has its copies (a pipe), the parent waits in its own hook, holding the GIL: no Python code of the parent
 * changes those arrays meanwhile (only a NumPy loop already running without the GIL in another thread could). */
static int fork_pipe[2] = {-1, -1};
#define FORK_WAIT_MS 5000

/* Request pages that calls running now have argument views in (MAP_SHARED with C#, which writes its next requests
 * there once the call is over): set by Python's own fork hook just before before_fork, copied by the child like
 * the live blocks, so a child never sees a later request through an argument view it inherited. */
#define MAX_FORK_REGIONS 256
static struct {
    uintptr_t low;
    size_t length;
} fork_regions[MAX_FORK_REGIONS];
static int nfork_regions;

static PyObject *py_fork_regions(PyObject *module, PyObject *list)
{
    PyObject *seq = PySequence_Fast(list, "fork_regions takes a sequence of (address, length) pairs");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    uintptr_t page = page_size();
    int k = 0;
    for (Py_ssize_t i = 0; i < n && k < MAX_FORK_REGIONS; i++) {
        unsigned long long low, length;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "KK", &low, &length)) {
            Py_DECREF(seq);
            nfork_regions = 0;
            return NULL;
        }
        if ((low & (page - 1)) || !length)
            continue;
        fork_regions[k].low = (uintptr_t)low;
        fork_regions[k].length = (size_t)((length + page - 1) & ~(unsigned long long)(page - 1));
        k++;
    }
    Py_DECREF(seq);
    nfork_regions = k;
    Py_RETURN_NONE;
}

/* In a forked child: [low, low + length) gets private pages holding the same bytes. */
static int privatise(uintptr_t low, size_t length)
{
    void *copy = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (copy == MAP_FAILED)
        return -1;
    memcpy(copy, (void *)low, length);
    if (mremap(copy, length, length, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)low) != (void *)low) {
        munmap(copy, length);
        return -1;
    }
    return 0;
}

static PyObject *py_before_fork(PyObject *module, PyObject *unused)
{
    pthread_mutex_lock(&lock);           /* its holders never wait for the GIL: no deadlock */
    int live = 0;
    for (int i = 0; i < nblocks; i++)
        if (blocks[i].state == LIVE)
            live++;
    if ((live || nfork_regions) && pipe2(fork_pipe, O_CLOEXEC) != 0)
        fork_pipe[0] = fork_pipe[1] = -1;
    Py_RETURN_NONE;
}

static PyObject *py_after_fork_parent(PyObject *module, PyObject *unused)
{
    pthread_mutex_unlock(&lock);
    nfork_regions = 0;
    if (fork_pipe[0] >= 0) {
        char byte;
        struct pollfd p = {fork_pipe[0], POLLIN, 0};
        close(fork_pipe[1]);             /* a child that dies or execs first closes its end: poll returns */
        if (poll(&p, 1, FORK_WAIT_MS) > 0 && read(fork_pipe[0], &byte, 1) < 0) {
            /* nothing to do: the child made its copies, or is gone */
        }
        close(fork_pipe[0]);
        fork_pipe[0] = fork_pipe[1] = -1;
    }
    Py_RETURN_NONE;
}

static PyObject *py_after_fork_child(PyObject *module, PyObject *unused)
{
    pthread_mutex_init(&lock, NULL);
    forks++;                              /* the child's arrays come from the C library, also once an end()
                                             gives back an outer call its parent began */
    call.force = 0;
    int failed = 0;
    for (int i = 0; i < nblocks; i++) {
        Block *b = &blocks[i];
        if (b->state != LIVE)
            continue;
        void *copy = mmap(NULL, b->length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (copy == MAP_FAILED) {
            failed++;
            continue;
        }
        memcpy(copy, (void *)b->low, b->length);
        if (mremap(copy, b->length, b->length, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)b->low) != (void *)b->low) {
            munmap(copy, b->length);
            failed++;
        }
    }
    /* they stay LIVE in the table: freeing one drops it (its pages belong to the child's copy of the mapping) */
    for (int i = 0; i < nfork_regions; i++)
        if (privatise(fork_regions[i].low, fork_regions[i].length) != 0)
            failed++;
    nfork_regions = 0;
    if (fork_pipe[1] >= 0) {
        if (write(fork_pipe[1], "", 1) < 0) {
            /* the parent stopped waiting */
        }
        close(fork_pipe[0]);
        close(fork_pipe[1]);
        fork_pipe[0] = fork_pipe[1] = -1;
    }
    if (failed)
        fprintf(stderr, "lesspy: %d array(s) of this forked process still share memory with their parent "
                        "(no memory for private copies); copy them (np.array) before writing to them\n", failed);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"begin", py_begin, METH_VARARGS,
     "begin(place, room) -> scope: NumPy's big arrays of this thread's call go to `place` (at most `room` bytes) "
     "until end(scope)."},
    {"end", py_end, METH_O,
     "end(scope): the call is over; this thread's state before its begin() is back (begin()/end() nest)."},
    {"depth", py_depth, METH_NOARGS, "depth() -> how many begin()s are in effect on this thread."},
    {"place_next", py_place_next, METH_VARARGS,
     "place_next(place, room) -> bool: result_array(): the next allocation of this thread's call goes to `place`."},
    {"unforce", py_unforce, METH_NOARGS, "unforce(): place_next is over (its allocation done or failed)."},
    {"reserved", py_reserved, METH_NOARGS, "reserved() -> bool: this thread's call made its result_array()."},
    {"live", py_live, METH_O, "live(place) -> size of the block living at `place` in a mapping (0: none)."},
    {"move_out", py_move_out, METH_VARARGS,
     "move_out(place, base, fd, old, old_token=0) -> (size, released, token): give the block at `place` private "
     "pages with its bytes (guarded: token)."},
    {"move_pages", py_move_pages, METH_VARARGS,
     "move_pages(base, fd, old, end, ranges, old_token=0) -> (bytes made private, released): a request mapping's "
     "kept argument pages."},
    {"views", py_views, METH_O, "views(memoryview) -> how many memoryviews share its buffer."},
    {"set_guard", py_set_guard, METH_O,
     "set_guard(_sigbusguard._C_API): moved blocks are registered with the SIGBUS guard while they are mapped."},
    {"reap", py_reap, METH_NOARGS, "reap() -> addresses of moved blocks freed since (their old mappings may go)."},
    {"moved", py_moved, METH_NOARGS, "moved() -> how many moved blocks are alive (or freed and not reaped)."},
    {"punch", py_punch, METH_VARARGS, "punch(fd, offset, length): free those bytes of the file on disk (a hole)."},
    {"fork_regions", py_fork_regions, METH_O,
     "fork_regions([(address, length), ...]): request pages a forked child gets private copies of (argument views)."},
    {"before_fork", py_before_fork, METH_NOARGS, "os.register_at_fork(before=...)."},
    {"after_fork_parent", py_after_fork_parent, METH_NOARGS, "os.register_at_fork(after_in_parent=...)."},
    {"after_fork_child", py_after_fork_child, METH_NOARGS, "os.register_at_fork(after_in_child=...)."},
    {"_fail_next_map", py_fail_next_map, METH_NOARGS,
     "_fail_next_map(): for tests: the next page move fails as an mmap that unmapped its range first."},
    {NULL, NULL, 0, NULL},
};

/* import_array with an ImportError that says what lesspy needs, the cause (NumPy's own message) chained to it. */
static int import_numpy(void)
{
    if (_import_array() == 0)
        return 0;
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    PyErr_SetString(PyExc_ImportError, "lesspy_kernel._resultalloc needs a NumPy with NEP 49 data allocators (1.22 "
                    "or later) and the ABI it was built for (the cause below says what the running one lacks); "
                    "without it lesspy copies results into the reply");
    if (value) {
        PyObject *t2, *v2, *tb2;
        PyErr_Fetch(&t2, &v2, &tb2);
        PyErr_NormalizeException(&t2, &v2, &tb2);
        PyException_SetCause(v2, value);  /* steals `value` */
        Py_XDECREF(type);
        Py_XDECREF(traceback);
        PyErr_Restore(t2, v2, tb2);
    } else {
        Py_XDECREF(type);
        Py_XDECREF(traceback);
    }
    return -1;
}

static int exec_module(PyObject *module)
{
    if (import_numpy() < 0)
        return -1;
    State *st = state_of(module);
    st->handler = PyCapsule_New(&handler, "mem_handler", NULL);   /* the name NumPy looks for */
    if (!st->handler)
        return -1;
    if (PyModule_AddIntConstant(module, "MIN_BYTES", MIN_BYTES) < 0)
        return -1;
    /* the C-API feature version import_array required of the running NumPy */
    if (PyModule_AddIntConstant(module, "NUMPY_FEATURE_VERSION", NPY_FEATURE_VERSION) < 0)
        return -1;
    return 0;
}

static int traverse(PyObject *module, visitproc visit, void *arg)
{
    State *st = state_of(module);
    Py_VISIT(st ? st->handler : NULL);
    return 0;
}

static int clear(PyObject *module)
{
    State *st = state_of(module);
    if (st)
        Py_CLEAR(st->handler);
    return 0;
}

static void free_module(void *module)
{
    clear((PyObject *)module);
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
#ifdef Py_mod_multiple_interpreters
    /* one block table per process, and NumPy itself runs in one interpreter only */
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_USED},        /* the thread's call and the fork regions rely on the GIL */
#endif
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_resultalloc",
    .m_doc = "NumPy's allocator for lesspy calls that return an NdArray (see allocator.py).",
    .m_size = sizeof(State),
    .m_methods = methods,
    .m_slots = slots,
    .m_traverse = traverse,
    .m_clear = clear,
    .m_free = free_module,
};

PyMODINIT_FUNC PyInit__resultalloc(void)
{
    return PyModuleDef_Init(&module_def);
}

/*
 * The NumPy data allocator of lesspy calls that return an NdArray (allocator.py explains the why).
 *
 * While `begin` is in effect on a thread, the first allocation of at least MIN_BYTES that fits `room` is placed
 * at `place` (where a top-level NDARRAY reply's data goes in the lane's response mapping); everything else comes
 * from the C library. Blocks placed there are remembered in a small table so that `free` knows them, also when
 * the array dies later on another thread. No Python code runs inside the allocator functions: NumPy calls them
 * while an exception may be set, or without the GIL.
 *
 * NumPy's handler structure (NEP 49, PyDataMem_Handler version 1) is declared here rather than included, so the
 * extension builds without NumPy's headers; its layout is part of NumPy's ABI since 1.22.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
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

typedef struct {
    void *ctx;
    void *(*malloc)(void *ctx, size_t size);
    void *(*calloc)(void *ctx, size_t nelem, size_t elsize);
    void *(*realloc)(void *ctx, void *ptr, size_t new_size);
    void (*free)(void *ctx, void *ptr, size_t size);
} Allocator;

typedef struct {
    char name[127];
    uint8_t version;
    Allocator allocator;
} Handler;

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
static volatile int nblocks;              /* read without the lock only to skip the table when it is empty */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct {
    uintptr_t place;
    size_t room;
    int open;
    int reserved;                         /* result_array() took the place: nothing else goes there in this call */
    int force;                            /* result_array(): the next allocation goes to the place, whatever its size */
} Call;

static __thread Call call;                /* the call this thread runs */
static PyObject *(*set_handler)(PyObject *);

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
    nblocks--;
}

static void *take(size_t size)
{
    void *result = NULL;
    if (!call.open || size > call.room)
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
        nblocks++;
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
    if (ptr && nblocks) {
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
    if (ptr && nblocks) {
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

static Handler handler = {"lesspy", 1, {NULL, lp_malloc, lp_calloc, lp_realloc, lp_free}};
static PyObject *capsule;

/* ------------------------------------------------------------------ the module */

static PyObject *py_begin(PyObject *self, PyObject *args)
{
    unsigned long long place, room;
    if (!PyArg_ParseTuple(args, "KK", &place, &room))
        return NULL;
    call.place = (uintptr_t)place;
    call.room = (size_t)room;
    call.reserved = 0;
    call.force = 0;
    call.open = 1;
    PyObject *previous = set_handler(capsule);
    if (!previous)
        call.open = 0;
    return previous;
}

static PyObject *py_end(PyObject *self, PyObject *previous)
{
    call.open = 0;
    call.force = 0;
    PyObject *ours = set_handler(previous);
    if (!ours)
        return NULL;
    Py_DECREF(ours);
    Py_RETURN_NONE;
}

/* result_array(): the next allocation of this thread's call (its array's data) goes to `place`, whatever its size,
 * and nothing else goes there for the rest of the call. */
static PyObject *py_place_next(PyObject *self, PyObject *args)
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

static PyObject *py_unforce(PyObject *self, PyObject *unused)
{
    call.force = 0;
    Py_RETURN_NONE;
}

static PyObject *py_reserved(PyObject *self, PyObject *unused)
{
    return PyBool_FromLong(call.open && call.reserved);
}

static PyObject *py_live(PyObject *self, PyObject *arg)
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

/* The first fields of CPython's mmap object (Modules/mmapmodule.c), the same in every version since 3.0. */
typedef struct {
    PyObject_HEAD
    char *data;
    Py_ssize_t size;
} MmapHead;

/* Give the live block at `place` (in the mapping of the response file `fd` at `base`) pages of its own, without
 * copying under it: the pages it lies in are mapped again, MAP_PRIVATE, from the same file offsets, in one mmap
 * (MAP_FIXED: a thread touching them meanwhile waits in its page fault, none finds them unmapped), then made
 * private copies by the kernel (MADV_POPULATE_WRITE: a write fault on each page, which copies the file's page as
 * it is at that moment, with every write made before). A thread writing the array meanwhile writes either the
 * file's page before it is copied, or its own copy after: no write is lost, nothing changes a byte.
 *
 * `old` is the Python mmap object of that mapping, which Python no longer uses (Mapping.detach). When nothing
 * else holds it (Python checked), the rest of its pages are unmapped now and it is told it maps nothing (so
 * closing it only closes its descriptor): the block then pins only its own pages, unmapped when it is freed.
 * The block's pages stay a MAP_PRIVATE mapping of the file, whose private copies Linux takes away if the file is
 * truncated later: they are registered with the SIGBUS guard (a cut reads zeros, never a crash) until the block is
 * freed; when `old` is released, its own registration (`old_token`) is dropped before the rest is unmapped.
 * Returns (size moved, whether `old` was released that way, the block's guard token). Holds the GIL throughout. */
static PyObject *py_move_out(PyObject *self, PyObject *args)
{
    unsigned long long place, base, old_token = 0;
    int fd;
    PyObject *old;
    if (!PyArg_ParseTuple(args, "KKiO|K", &place, &base, &fd, &old, &old_token))
        return NULL;
    pthread_mutex_lock(&lock);
    int i = find((uintptr_t)place);
    if (i < 0 || blocks[i].state != LIVE) {
        pthread_mutex_unlock(&lock);
        return Py_BuildValue("(nOK)", (Py_ssize_t)0, Py_False, 0ULL);
    }
    Block *b = &blocks[i];
    uintptr_t page = page_size();
    if (b->low < (uintptr_t)base) {
        pthread_mutex_unlock(&lock);
        PyErr_SetString(PyExc_ValueError, "the block does not lie in the mapping it is said to be in");
        return NULL;
    }
    void *at = mmap((void *)b->low, b->length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd,
                    (off_t)(b->low - (uintptr_t)base));
    if (at != (void *)b->low) {
        pthread_mutex_unlock(&lock);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (madvise(at, b->length, MADV_POPULATE_WRITE) != 0) {
        /* an older kernel: a write fault on each page by an atomic add of 0, which changes no byte and, being
         * one atomic read-modify-write, cannot undo a concurrent store to the same word */
        for (uintptr_t p = b->low; p < b->low + b->length; p += page)
            __atomic_fetch_add((volatile uint64_t *)p, 0, __ATOMIC_SEQ_CST);
    }
    b->state = MOVED;
    b->owned = 0;
    b->token = guard(b->low, b->length);  /* its pages, guarded until it is freed (lp_free) */
    if (old != Py_None && strcmp(Py_TYPE(old)->tp_name, "mmap.mmap") == 0) {
        MmapHead *m = (MmapHead *)old;
        uintptr_t start = (uintptr_t)m->data, end = start + (uintptr_t)m->size;
        if (start == (uintptr_t)base && m->size > 0 && end >= b->low + b->length && !(end & (page - 1))) {
            unguard(old_token);               /* the old mapping's range: only the block's pages stay, guarded above */
            if (b->low > start)
                munmap((void *)start, b->low - start);
            if (end > b->low + b->length)
                munmap((void *)(b->low + b->length), end - (b->low + b->length));
            m->data = NULL;                   /* closing it now closes its descriptor and unmaps nothing */
            m->size = 0;
            b->owned = 1;
        }
    }
    PyObject *result = Py_BuildValue("(nOK)", (Py_ssize_t)b->size, b->owned ? Py_True : Py_False, b->token);
    pthread_mutex_unlock(&lock);
    return result;
}

/* A request mapping's argument views that Python still refers to after their call (kept in a global, a closure, a
 * generator...): the pages `ranges` of the mapping at `base` (of the request file `fd`, mapped from offset 0) get
 * private copies of their bytes at the same addresses, as in move_out (one mmap MAP_PRIVATE|MAP_FIXED of the same
 * file offsets, then a write fault on each page: no concurrent write is lost), so later requests written into the
 * file never show through them. The other pages of [base, base + end) become anonymous zero pages (bytes no
 * argument lies in: the gap before in-place data). `old` is the Python mmap object of that mapping, which Python
 * no longer uses (Mapping.detach); when only the argument views' buffer holds it (Python checked), its pages past
 * `end` are unmapped now and it is told it maps [base, base + end) only, which it unmaps when it is freed (with
 * the last argument view); its own descriptor of the file is closed, and its guard registration `old_token` is
 * dropped before the tail is unmapped (Python registered [base, base + end) first). Returns (the bytes made
 * private, whether `old` was cut down that way). */
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

static PyObject *py_move_pages(PyObject *self, PyObject *args)
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
            void *z = mmap((void *)(uintptr_t)(base + at), gap_end - at, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS, -1, 0);
            if (z == MAP_FAILED)
                return PyErr_SetFromErrno(PyExc_OSError);
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
            void *p = mmap((void *)low, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd,
                           (off_t)starts[i]);
            if (p != (void *)low)
                return PyErr_SetFromErrno(PyExc_OSError);
            if (madvise(p, length, MADV_POPULATE_WRITE) != 0)
                for (uintptr_t q = low; q < low + length; q += page)
                    __atomic_fetch_add((volatile uint64_t *)q, 0, __ATOMIC_SEQ_CST);
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
static PyObject *py_views(PyObject *self, PyObject *mv)
{
    if (!PyMemoryView_Check(mv)) {
        PyErr_SetString(PyExc_TypeError, "views() takes a memoryview");
        return NULL;
    }
    return PyLong_FromSsize_t(Py_REFCNT((PyObject *)((PyMemoryViewObject *)mv)->mbuf));
}

static PyObject *py_set_guard(PyObject *self, PyObject *capsule)
{
    GuardApi *api = (GuardApi *)PyCapsule_GetPointer(capsule, "lesspy_kernel._sigbusguard._C_API");
    if (!api)
        return NULL;
    guard_api = api;
    Py_RETURN_NONE;
}

static PyObject *py_reap(PyObject *self, PyObject *unused)
{
    PyObject *gone = PyList_New(0);
    if (!gone)
        return NULL;
    pthread_mutex_lock(&lock);
    for (int i = nblocks - 1; i >= 0; i--) {
        if (blocks[i].state != GONE)
            continue;
        PyObject *a = PyLong_FromSize_t(blocks[i].address);
        if (!a || PyList_Append(gone, a) < 0) {
            Py_XDECREF(a);
            break;
        }
        Py_DECREF(a);
        drop(i);
    }
    pthread_mutex_unlock(&lock);
    return gone;
}

static PyObject *py_moved(PyObject *self, PyObject *unused)
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
static PyObject *py_punch(PyObject *self, PyObject *args)
{
    int fd;
    long long offset, length;
    int rc;
    if (!PyArg_ParseTuple(args, "iLL", &fd, &offset, &length))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length);
    Py_END_ALLOW_THREADS
    if (rc != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
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

static PyObject *py_fork_regions(PyObject *self, PyObject *list)
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

static PyObject *py_before_fork(PyObject *self, PyObject *unused)
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

static PyObject *py_after_fork_parent(PyObject *self, PyObject *unused)
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

static PyObject *py_after_fork_child(PyObject *self, PyObject *unused)
{
    pthread_mutex_init(&lock, NULL);
    call.open = 0;                        /* the child's arrays come from the C library */
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
     "begin(place, room) -> previous handler: NumPy's big arrays of this thread's call go to `place` (at most `room` bytes)."},
    {"end", py_end, METH_O, "end(previous): the call is over; NumPy's allocator is `previous` again."},
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
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_resultalloc",
                                    "NumPy's allocator for lesspy calls that return an NdArray (see allocator.py).",
                                    -1, methods};

PyMODINIT_FUNC PyInit__resultalloc(void)
{
    PyObject *umath = PyImport_ImportModule("numpy._core._multiarray_umath");     /* NumPy 2 */
    if (!umath) {
        PyErr_Clear();
        umath = PyImport_ImportModule("numpy.core._multiarray_umath");            /* NumPy 1.22 ... 1.26 */
    }
    if (!umath)
        return NULL;
    PyObject *api = PyObject_GetAttrString(umath, "_ARRAY_API");
    Py_DECREF(umath);
    if (!api)
        return NULL;
    void **table = (void **)PyCapsule_GetPointer(api, NULL);
    Py_DECREF(api);                       /* the table lives as long as NumPy, which stays imported */
    if (!table)
        return NULL;
    set_handler = (PyObject * (*)(PyObject *)) table[304];   /* PyDataMem_SetHandler (NumPy >= 1.22) */
    capsule = PyCapsule_New(&handler, "mem_handler", NULL);
    if (!capsule)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "MIN_BYTES", MIN_BYTES) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

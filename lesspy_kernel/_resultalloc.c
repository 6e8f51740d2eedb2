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
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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

enum { LIVE = 1, MOVED = 2, GONE = 3 };   /* in the mapping; moved out (private pages); moved and freed */

typedef struct {
    uintptr_t address;
    size_t size;
    int state;
} Block;

static Block blocks[MAX_BLOCKS];
static volatile int nblocks;              /* read without the lock only to skip the table when it is empty */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct {
    uintptr_t place;
    size_t room;
    int open;
    int reserved;
} Call;

static __thread Call call;                /* the call this thread runs */
static PyObject *(*set_handler)(PyObject *);

static int find(uintptr_t address)        /* with the lock held */
{
    for (int i = 0; i < nblocks; i++)
        if (blocks[i].address == address)
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
    if (!call.open || call.reserved || size < MIN_BYTES || size > call.room)
        return NULL;
    pthread_mutex_lock(&lock);
    if (find(call.place) < 0 && nblocks < MAX_BLOCKS) {
        blocks[nblocks].address = call.place;
        blocks[nblocks].size = size;
        blocks[nblocks].state = LIVE;
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
            else
                blocks[i].state = GONE;   /* its old mapping is released by reap() */
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
    call.open = 1;
    PyObject *previous = set_handler(capsule);
    if (!previous)
        call.open = 0;
    return previous;
}

static PyObject *py_end(PyObject *self, PyObject *previous)
{
    call.open = 0;
    PyObject *ours = set_handler(previous);
    if (!ours)
        return NULL;
    Py_DECREF(ours);
    Py_RETURN_NONE;
}

static PyObject *py_reserve(PyObject *self, PyObject *unused)
{
    call.reserved = 1;
    Py_RETURN_NONE;
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

/* Replace the pages of the live block at `address` with private ones holding the same bytes (mremap onto
 * them), so the mapping under them can be reused while the array lives on. Holds the GIL throughout. */
static PyObject *py_move_out(PyObject *self, PyObject *arg)
{
    uintptr_t address = (uintptr_t)PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred())
        return NULL;
    pthread_mutex_lock(&lock);
    int i = find(address);
    if (i < 0 || blocks[i].state != LIVE) {
        pthread_mutex_unlock(&lock);
        return PyLong_FromLong(0);
    }
    size_t size = blocks[i].size;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t low = address & ~(page - 1);
    size_t length = ((address + size + page - 1) & ~(page - 1)) - low;
    void *copy = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (copy == MAP_FAILED) {
        pthread_mutex_unlock(&lock);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    memcpy(copy, (void *)low, length);
    if (mremap(copy, length, length, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)low) != (void *)low) {
        munmap(copy, length);
        pthread_mutex_unlock(&lock);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    blocks[i].state = MOVED;
    pthread_mutex_unlock(&lock);
    return PyLong_FromSize_t(size);
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

static PyMethodDef methods[] = {
    {"begin", py_begin, METH_VARARGS,
     "begin(place, room) -> previous handler: NumPy's big arrays of this thread's call go to `place` (at most `room` bytes)."},
    {"end", py_end, METH_O, "end(previous): the call is over; NumPy's allocator is `previous` again."},
    {"reserve", py_reserve, METH_NOARGS, "result_array() took the place for the rest of this thread's call."},
    {"live", py_live, METH_O, "live(place) -> size of the block living at `place` in a mapping (0: none)."},
    {"move_out", py_move_out, METH_O, "move_out(place) -> size: give the block at `place` private pages with its bytes."},
    {"reap", py_reap, METH_NOARGS, "reap() -> addresses of moved blocks freed since (their old mappings may go)."},
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

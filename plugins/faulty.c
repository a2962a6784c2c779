/*
 * Faulty plugins for the harness's own tests (to start a shim of your own,
 * see example.c instead): a small C engine serving the
 * vendor's seed model (input x 1x1x3x3, weight "weight" 1x1x3x3, output y
 * 1x1x1x1, a 3x3 conv), built with one fault selected at compile time:
 *
 *   -DFAULT_NONE                  correct on the seed model (and only there)
 *   -DFAULT_WRONG_VERSION         supports only ABI version 2
 *   -DFAULT_NO_ENTRY_POINT        exports no refit_plugin_get_api
 *   -DFAULT_NULL_SLOT             leaves the infer slot NULL
 *   -DFAULT_NO_MESSAGE            fails without setting last_error
 *   -DFAULT_GARBAGE_AFTER_REFIT   serves garbage once refitted
 *   -DFAULT_SEGV_IN_INFER         writes through a NULL pointer in the 6th infer
 *   -DFAULT_ABORT_IN_REFIT        calls abort() in refit
 *   -DFAULT_HANG_IN_REFIT         never returns from refit
 *   -DFAULT_USE_AFTER_FREE        declares atomic; an inference reads the
 *                                 weights through a pointer taken at its
 *                                 start, and refit frees the old buffer
 *                                 without waiting for such readers. Outputs
 *                                 mostly stay plausible; the address
 *                                 sanitizer sees the use after free
 *   -DFAULT_HANG_INFER_WHILE_REFIT
 *                                 declares atomic; a refit waits for running
 *                                 inferences to drain, and an inference that
 *                                 sees a refit waiting waits for it to end,
 *                                 still counted as running: a deadlock
 *
 * Build: cc -shared -fPIC -I include -DFAULT_NONE plugins/faulty.c -o libseed.so
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "refit_plugin.h"

static _Thread_local char last_error_buf[512];

static refit_status fail(refit_status status, const char *message) {
#ifdef FAULT_NO_MESSAGE
    (void)message;
    last_error_buf[0] = '\0';
#else
    snprintf(last_error_buf, sizeof last_error_buf, "%s", message);
#endif
    return status;
}

struct refit_engine {
    float weight[9];
#ifdef FAULT_USE_AFTER_FREE
    /* The published weights: 9 values at offset 16 of a 32-float block
     * (clear of what the allocator writes into a freed block). */
    float *_Atomic live;
#endif
    int refitted;
    int refit_enabled;
};
struct refit_context {
    struct refit_engine *engine;
    float out;
    refit_tensor view;
};
struct refit_refitter {
    struct refit_engine *engine;
    float staged[9];
    int has_staged;
    const char *missing[1];
};

#ifdef FAULT_SEGV_IN_INFER
/* Not const: the compiler cannot see the write is through NULL. */
static int *volatile nowhere = NULL;
static int infer_calls;
#endif
#ifdef FAULT_HANG_INFER_WHILE_REFIT
static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int running, refit_waiting;
#endif

static const int64_t dims_x[4] = {1, 1, 3, 3};
static const int64_t dims_y[4] = {1, 1, 1, 1};

/* Whether options_json (a JSON object, or NULL) sets "enable_refit" to
 * false; absent means true. Tolerates any whitespace around the colon. */
static int refit_disabled(const char *options) {
    const char *p = options ? strstr(options, "\"enable_refit\"") : NULL;
    if (!p) return 0;
    p += strlen("\"enable_refit\"");
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (*p++ != ':') return 0;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    return strncmp(p, "false", 5) == 0;
}

static refit_status engine_create(const char *path, const char *options, refit_engine **out) {
    if (!path || !out) return fail(REFIT_INVALID_ARGUMENT, "model_path or out is NULL");
    FILE *f = fopen(path, "rb");
    if (!f) return fail(REFIT_ERROR, "cannot open the model file");
    fclose(f);
    refit_engine *e = calloc(1, sizeof *e);
    if (!e) return fail(REFIT_ERROR, "out of memory");
    e->refit_enabled = !refit_disabled(options);
#ifdef FAULT_USE_AFTER_FREE
    e->live = calloc(32, sizeof(float));
#endif
    *out = e;
    return REFIT_OK;
}
static void engine_destroy(refit_engine *e) {
#ifdef FAULT_USE_AFTER_FREE
    free(e->live);
#endif
    free(e);
}
static refit_status engine_describe(const refit_engine *e, refit_engine_info *out) {
    out->name = "c-seed";
    out->version = "1";
#if defined(FAULT_HANG_INFER_WHILE_REFIT) || defined(FAULT_USE_AFTER_FREE)
    out->concurrency = REFIT_ATOMIC;
#else
    out->concurrency = REFIT_QUIESCED;
#endif
    out->failed_refit = REFIT_ROLLS_BACK;
    out->subset = REFIT_SUBSET_ACCEPTED;
    out->non_finite = REFIT_NON_FINITE_REJECTED;
    out->refit_enabled = e->refit_enabled;
    return REFIT_OK;
}
static refit_status one(const refit_engine *e, uint32_t *count) {
    (void)e;
    *count = 1;
    return REFIT_OK;
}
static refit_status input(const refit_engine *e, uint32_t i, refit_tensor_desc *out) {
    (void)e;
    if (i != 0) return fail(REFIT_INVALID_ARGUMENT, "index out of range");
    *out = (refit_tensor_desc){"x", REFIT_F32, 4, dims_x};
    return REFIT_OK;
}
static refit_status output(const refit_engine *e, uint32_t i, refit_tensor_desc *out) {
    (void)e;
    if (i != 0) return fail(REFIT_INVALID_ARGUMENT, "index out of range");
    *out = (refit_tensor_desc){"y", REFIT_F32, 4, dims_y};
    return REFIT_OK;
}
static refit_status weight(const refit_engine *e, uint32_t i, refit_tensor_desc *out) {
    (void)e;
    if (i != 0) return fail(REFIT_INVALID_ARGUMENT, "index out of range");
    *out = (refit_tensor_desc){"weight", REFIT_F32, 4, dims_x};
    return REFIT_OK;
}
static refit_status context_create(refit_engine *e, refit_context **out) {
    refit_context *c = calloc(1, sizeof *c);
    if (!c) return fail(REFIT_ERROR, "out of memory");
    c->engine = e;
    *out = c;
    return REFIT_OK;
}
static void context_destroy(refit_context *c) { free(c); }

static int is_seed_shape(const refit_tensor *t) {
    if (t->rank != 4) return 0;
    for (int i = 0; i < 4; i++)
        if (t->dims[i] != dims_x[i]) return 0;
    return 1;
}

__attribute__((unused)) static refit_status infer(refit_context *c, const refit_tensor *in, uint32_t n, const refit_tensor **out,
                          uint32_t *n_out) {
    if (n != 1) return fail(REFIT_SHAPE_MISMATCH, "expected 1 input");
    if (in[0].dtype != REFIT_F32) return fail(REFIT_DTYPE_MISMATCH, "input 'x': expected f32");
    if (!is_seed_shape(&in[0]) || in[0].byte_len != 36)
        return fail(REFIT_SHAPE_MISMATCH, "input 'x': expected shape [1, 1, 3, 3] and 36 bytes");
#ifdef FAULT_SEGV_IN_INFER
    if (++infer_calls > 5) *nowhere = 1;
#endif
#ifdef FAULT_HANG_INFER_WHILE_REFIT
    pthread_mutex_lock(&gate);
    running++;
    while (refit_waiting) pthread_cond_wait(&changed, &gate);
    pthread_mutex_unlock(&gate);
    usleep(200); /* the device's time */
#endif
    const float *x = in[0].data;
    float sum = 0.0f;
#ifdef FAULT_USE_AFTER_FREE
    const float *w = c->engine->live + 16;
    usleep(50); /* the device's time, with the pointer in hand */
    for (int i = 0; i < 9; i++) sum += x[i] * w[i];
#else
    for (int i = 0; i < 9; i++) sum += x[i] * c->engine->weight[i];
#endif
#ifdef FAULT_GARBAGE_AFTER_REFIT
    if (c->engine->refitted) sum = 12345.0f;
#endif
#ifdef FAULT_HANG_INFER_WHILE_REFIT
    pthread_mutex_lock(&gate);
    running--;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&gate);
#endif
    c->out = sum;
    c->view = (refit_tensor){REFIT_F32, 4, dims_y, &c->out, 4};
    *out = &c->view;
    *n_out = 1;
    return REFIT_OK;
}

static refit_status refitter_create(refit_engine *e, refit_refitter **out) {
    if (!e->refit_enabled) return fail(REFIT_DISABLED, "the engine was built without enable_refit");
    refit_refitter *r = calloc(1, sizeof *r);
    if (!r) return fail(REFIT_ERROR, "out of memory");
    r->engine = e;
    *out = r;
    return REFIT_OK;
}
static void refitter_destroy(refit_refitter *r) { free(r); }
static refit_status set_named_weights(refit_refitter *r, const char *name, const refit_tensor *t) {
    if (strcmp(name, "weight") != 0) return fail(REFIT_UNKNOWN_WEIGHT, "unknown weight: the only one is 'weight'");
    if (t->dtype != REFIT_F32) return fail(REFIT_DTYPE_MISMATCH, "weight 'weight': expected dtype f32");
    if (!is_seed_shape(t)) return fail(REFIT_SHAPE_MISMATCH, "weight 'weight': expected shape [1, 1, 3, 3]");
    if (t->byte_len != 36) return fail(REFIT_SHAPE_MISMATCH, "weight 'weight': expected 36 bytes");
    const float *v = t->data;
    for (int i = 0; i < 9; i++)
        if (!isfinite(v[i])) return fail(REFIT_NON_FINITE, "weight 'weight': non-finite value");
    memcpy(r->staged, v, sizeof r->staged);
    r->has_staged = 1;
    return REFIT_OK;
}
static refit_status missing(refit_refitter *r, const char *const **names, uint32_t *count) {
    r->missing[0] = "weight";
    *names = r->missing;
    *count = r->has_staged ? 0 : 1;
    return REFIT_OK;
}
static refit_status refit(refit_refitter *r) {
#ifdef FAULT_ABORT_IN_REFIT
    abort();
#endif
#ifdef FAULT_HANG_IN_REFIT
    for (;;) pause();
#endif
#ifdef FAULT_HANG_INFER_WHILE_REFIT
    pthread_mutex_lock(&gate);
    refit_waiting = 1;
    /* The time the device takes to drain: an inference that starts now
     * waits for the refit, still counted as running. */
    pthread_mutex_unlock(&gate);
    usleep(5000);
    pthread_mutex_lock(&gate);
    while (running > 0) pthread_cond_wait(&changed, &gate);
    refit_waiting = 0;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&gate);
#endif
#ifdef FAULT_USE_AFTER_FREE
    if (r->has_staged) {
        float *next = calloc(32, sizeof(float));
        if (!next) return fail(REFIT_ERROR, "out of memory");
        memcpy(next + 16, r->staged, sizeof r->staged);
        free(atomic_exchange(&r->engine->live, next)); /* readers may hold it */
    }
#endif
    if (r->has_staged) {
        memcpy(r->engine->weight, r->staged, sizeof r->staged);
        r->engine->refitted = 1;
        r->has_staged = 0;
    }
    return REFIT_OK;
}
static const char *last_error(void) { return last_error_buf; }

static const refit_plugin_api api = {
    REFIT_PLUGIN_ABI_VERSION,
    sizeof(refit_plugin_api),
    engine_create,
    engine_destroy,
    engine_describe,
    one,
    input,
    one,
    output,
    one,
    weight,
    context_create,
    context_destroy,
#ifdef FAULT_NULL_SLOT
    NULL,
#else
    infer,
#endif
    refitter_create,
    refitter_destroy,
    set_named_weights,
    missing,
    refit,
    last_error,
};

#ifdef FAULT_NO_ENTRY_POINT
REFIT_EXPORT const refit_plugin_api *refit_plugin_get_api_v1(uint32_t abi_version) {
#else
REFIT_EXPORT const refit_plugin_api *refit_plugin_get_api(uint32_t abi_version) {
#endif
#ifdef FAULT_WRONG_VERSION
    return abi_version == 2 ? &api : NULL;
#else
    return abi_version == REFIT_PLUGIN_ABI_VERSION ? &api : NULL;
#endif
}

/*
 * example.c -- a complete plugin to start a shim from: every call of
 * include/refit_plugin.h implemented the way the checks expect, over a tiny
 * engine of its own. Where your shim calls your runtime (build the engine
 * from the model, describe its tensors, enqueue an inference, copy weights
 * in), this file reads the ONNX model itself and runs Conv and Relu over
 * 2-D images (NCHW, f32) on the CPU. A model it cannot run (1-D or 3-D
 * convolutions, another op) is refused with REFIT_UNSUPPORTED, which
 * `refit-harness check` reports as a skip, not a failure.
 *
 * It declares the strongest contract: atomic (readers and writers share
 * the weights under a pthread rwlock, so each inference sees one whole
 * weight version, and a refit builds on the latest one), rolls-back (a
 * refit validates everything at staging, so it cannot fail halfway),
 * subset-accepted, non-finite-rejected, f32.
 *
 * Build and check:
 *   cc -O2 -shared -fPIC -pthread -I include -DFAULT_NONE plugins/example.c -o libexample.so -lm
 *   refit-harness check --engine plugin:./libexample.so
 *
 * -DFAULT_TORN builds it broken on purpose: refit copies the new weights in
 * place while inferences run (no lock), still declaring atomic. The stress
 * checks then report torn outputs; try it to see what a failure looks like.
 * -DFAULT_STALE_BIAS: refit accepts a bias (a rank-1 weight) and never
 * applies it, as a runtime that dropped the bias at build would; the checks
 * then name the bias still served at its old version.
 * -DFAULT_READS_AFTER_RETURN: set_named_weights keeps the caller's pointer
 * and copies from it at refit, after the call returned (the caller may have
 * reused the buffer by then).
 * -DFAULT_SKIPS_SEEN_ADDRESS: set_named_weights skips a weight staged from
 * the same address as the last time, taking it for the same data (a
 * serving loop reuses one staging buffer).
 */
#include <math.h>
#include <stddef.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "refit_plugin.h"

static _Thread_local char last_error_buf[512];

static refit_status fail(refit_status status, const char *fmt, const char *arg) {
    snprintf(last_error_buf, sizeof last_error_buf, fmt, arg ? arg : "");
    return status;
}

/* ---- protobuf reading ---- */

typedef struct { const unsigned char *p, *end; } buf;

static int varint(buf *b, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (b->p >= b->end) return 0;
        unsigned char c = *b->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) { *out = v; return 1; }
    }
    return 0;
}

/* The next field: number, wire type, and for wire type 2 the payload. */
static int field(buf *b, uint32_t *num, uint32_t *wire, uint64_t *v, buf *sub) {
    uint64_t key;
    if (!varint(b, &key)) return 0;
    *num = (uint32_t)(key >> 3);
    *wire = (uint32_t)(key & 7);
    switch (*wire) {
    case 0: return varint(b, v);
    case 1: if (b->end - b->p < 8) return 0; memcpy(v, b->p, 8); b->p += 8; return 1;
    case 5: { uint32_t x; if (b->end - b->p < 4) return 0; memcpy(&x, b->p, 4); *v = x; b->p += 4; return 1; }
    case 2:
        if (!varint(b, v) || (uint64_t)(b->end - b->p) < *v) return 0;
        sub->p = b->p; sub->end = b->p + *v; b->p += *v; return 1;
    default: return 0;
    }
}

static char *dupstr(buf s) {
    size_t n = (size_t)(s.end - s.p);
    char *c = malloc(n + 1);
    if (c) { memcpy(c, s.p, n); c[n] = 0; }
    return c;
}

#define MAX_ITEMS 64

typedef struct {
    char *name;
    int64_t dims[8];
    uint32_t rank;
    float *values;
    size_t count;
} tensor;

typedef struct {
    int relu;                    /* else conv */
    char *in[3];
    int n_in;
    char *out;
    int64_t group, strides[2], pads[4], dilations[2];
    int auto_pad;                /* 0 notset, 1 valid, 2 same_upper, 3 same_lower */
} node;

typedef struct {
    char *name;
    int64_t dims[8];
    uint32_t rank;
} value_info;

struct refit_engine {
    tensor weights[MAX_ITEMS];
    uint32_t n_weights;
    node nodes[MAX_ITEMS];
    uint32_t n_nodes;
    value_info inputs[4], outputs[4];
    uint32_t n_inputs, n_outputs;
    refit_tensor_desc weight_desc[MAX_ITEMS];
    int refit_enabled;
    pthread_rwlock_t lock;
#ifdef FAULT_SKIPS_SEEN_ADDRESS
    const void *seen[MAX_ITEMS];
#endif
};

static int parse_ints(buf v, uint32_t wire, uint64_t scalar, int64_t *out, int *n, int cap) {
    if (wire == 0) { if (*n < cap) out[(*n)++] = (int64_t)scalar; return 1; }
    while (v.p < v.end) {
        uint64_t x;
        if (!varint(&v, &x)) return 0;
        if (*n < cap) out[(*n)++] = (int64_t)x;
    }
    return 1;
}

static refit_status parse_node(buf b, node *nd) {
    uint32_t num, wire; uint64_t v; buf s;
    char op[32] = "";
    nd->group = 1;
    nd->strides[0] = nd->strides[1] = 1;
    nd->dilations[0] = nd->dilations[1] = 1;
    while (b.p < b.end) {
        if (!field(&b, &num, &wire, &v, &s)) return fail(REFIT_ERROR, "malformed node%s", NULL);
        if (num == 1 && wire == 2 && nd->n_in < 3) nd->in[nd->n_in++] = dupstr(s);
        else if (num == 2 && wire == 2 && !nd->out) nd->out = dupstr(s);
        else if (num == 4 && wire == 2) snprintf(op, sizeof op, "%.*s", (int)(s.end - s.p), s.p);
        else if (num == 5 && wire == 2) {
            char an[32] = ""; int64_t ints[8]; int n = 0; int64_t i = 0; char str[32] = "";
            buf a = s;
            while (a.p < a.end) {
                uint32_t an_num, an_wire; uint64_t av; buf as;
                if (!field(&a, &an_num, &an_wire, &av, &as)) return fail(REFIT_ERROR, "malformed attribute%s", NULL);
                if (an_num == 1 && an_wire == 2) snprintf(an, sizeof an, "%.*s", (int)(as.end - as.p), as.p);
                else if (an_num == 3 && an_wire == 0) i = (int64_t)av;
                else if (an_num == 4 && an_wire == 2) snprintf(str, sizeof str, "%.*s", (int)(as.end - as.p), as.p);
                else if (an_num == 8) { if (!parse_ints(as, an_wire, av, ints, &n, 8)) return fail(REFIT_ERROR, "malformed ints%s", NULL); }
            }
            if (!strcmp(an, "group")) nd->group = i;
            else if (!strcmp(an, "strides") && n == 2) memcpy(nd->strides, ints, sizeof nd->strides);
            else if (!strcmp(an, "dilations") && n == 2) memcpy(nd->dilations, ints, sizeof nd->dilations);
            else if (!strcmp(an, "pads") && n == 4) memcpy(nd->pads, ints, sizeof nd->pads);
            else if (!strcmp(an, "auto_pad"))
                nd->auto_pad = !strcmp(str, "VALID") ? 1 : !strcmp(str, "SAME_UPPER") ? 2 : !strcmp(str, "SAME_LOWER") ? 3 : 0;
            else if ((!strcmp(an, "strides") || !strcmp(an, "dilations") || !strcmp(an, "pads")) && n != 0)
                return fail(REFIT_UNSUPPORTED, "Conv attribute '%s' for other than 2 spatial dimensions: this engine runs 2-D convolutions only", an);
        }
    }
    if (!strcmp(op, "Relu")) nd->relu = 1;
    else if (strcmp(op, "Conv")) return fail(REFIT_UNSUPPORTED, "op '%s': this engine runs Conv and Relu only", op);
    if (!nd->out || nd->n_in < 1) return fail(REFIT_ERROR, "a node without input or output%s", NULL);
    return REFIT_OK;
}

static refit_status parse_tensor(buf b, tensor *t) {
    uint32_t num, wire; uint64_t v; buf s, raw = {0, 0}, fdata = {0, 0};
    int n = 0, dtype = 0, nfloat = 0;
    float scalar_floats[1] = {0};
    while (b.p < b.end) {
        if (!field(&b, &num, &wire, &v, &s)) return fail(REFIT_ERROR, "malformed initializer%s", NULL);
        if (num == 1) { if (!parse_ints(s, wire, v, t->dims, &n, 8)) return fail(REFIT_ERROR, "malformed dims%s", NULL); }
        else if (num == 2) dtype = (int)v;
        else if (num == 4 && wire == 2) fdata = s;
        else if (num == 4 && wire == 5) { uint32_t x = (uint32_t)v; memcpy(scalar_floats, &x, 4); nfloat = 1; }
        else if (num == 8 && wire == 2) t->name = dupstr(s);
        else if (num == 9 && wire == 2) raw = s;
    }
    if (dtype != 1) return fail(REFIT_UNSUPPORTED, "initializer '%s': this engine holds f32 weights only", t->name);
    t->rank = (uint32_t)n;
    t->count = 1;
    for (int i = 0; i < n; i++) t->count *= (size_t)t->dims[i];
    t->values = calloc(t->count ? t->count : 1, sizeof(float));
    if (!t->values) return fail(REFIT_ERROR, "out of memory%s", NULL);
    size_t have = raw.p ? (size_t)(raw.end - raw.p) : fdata.p ? (size_t)(fdata.end - fdata.p) : (size_t)nfloat * 4;
    if (have != t->count * 4) return fail(REFIT_ERROR, "initializer '%s': data does not match its dims", t->name);
    if (raw.p) memcpy(t->values, raw.p, have);
    else if (fdata.p) memcpy(t->values, fdata.p, have);
    else if (nfloat) t->values[0] = scalar_floats[0];
    return REFIT_OK;
}

static refit_status parse_value_info(buf b, value_info *vi) {
    uint32_t num, wire; uint64_t v; buf s;
    while (b.p < b.end) {
        if (!field(&b, &num, &wire, &v, &s)) return fail(REFIT_ERROR, "malformed value info%s", NULL);
        if (num == 1 && wire == 2) vi->name = dupstr(s);
        else if (num == 2 && wire == 2) {
            /* TypeProto.tensor_type (1) -> shape (2) -> dim (1) -> dim_value (1) */
            buf tp = s, tt, sh, dm, x;
            uint32_t n1, w1; uint64_t v1;
            while (tp.p < tp.end && field(&tp, &n1, &w1, &v1, &tt)) {
                if (n1 != 1 || w1 != 2) continue;
                while (tt.p < tt.end && field(&tt, &n1, &w1, &v1, &sh)) {
                    if (n1 != 2 || w1 != 2) continue;
                    while (sh.p < sh.end && field(&sh, &n1, &w1, &v1, &dm)) {
                        if (n1 != 1 || w1 != 2 || vi->rank >= 8) continue;
                        int64_t d = -1;
                        while (dm.p < dm.end && field(&dm, &n1, &w1, &v1, &x))
                            if (n1 == 1 && w1 == 0) d = (int64_t)v1;
                        vi->dims[vi->rank++] = d;
                    }
                }
            }
        }
    }
    return REFIT_OK;
}

static void engine_destroy(refit_engine *e);

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

/* Skips one JSON string starting at its opening quote; returns the
 * character after the closing quote, or NULL if it is not closed. */
static const char *skip_string(const char *p) {
    for (p++; *p; p++) {
        if (*p == '\\' && p[1]) p++;
        else if (*p == '"') return p + 1;
    }
    return NULL;
}

/* The first top-level key of options_json (a JSON object, or NULL) that
 * this plugin does not take, copied into key; 0 when every key is known.
 * The harness sends "enable_refit"; a vendor's plugin lists its own keys
 * here, so a typo ("devcie") is an error rather than silently ignored. */
static int unknown_option(const char *options, char *key, size_t n) {
    static const char *const known[] = {"enable_refit"};
    const char *p = options;
    int depth = 0;
    if (!p) return 0;
    while (*p) {
        if (*p == '"') {
            const char *end = skip_string(p);
            if (!end) return 0;
            const char *q = end;
            while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r') q++;
            if (depth == 1 && *q == ':') {
                size_t len = (size_t)(end - p - 2), k, ok = 0;
                for (k = 0; k < sizeof known / sizeof *known; k++)
                    if (strlen(known[k]) == len && strncmp(p + 1, known[k], len) == 0) ok = 1;
                if (!ok) {
                    snprintf(key, n, "%.*s", (int)len, p + 1);
                    return 1;
                }
            }
            p = end;
            continue;
        }
        if (*p == '{' || *p == '[') depth++;
        else if (*p == '}' || *p == ']') depth--;
        p++;
    }
    return 0;
}

static refit_status engine_create(const char *path, const char *options, refit_engine **out) {
    if (!path || !out) return fail(REFIT_INVALID_ARGUMENT, "model_path or out is NULL%s", NULL);
    char key[128];
    if (unknown_option(options, key, sizeof key))
        return fail(REFIT_INVALID_ARGUMENT, "unknown option '%s': this plugin takes enable_refit", key);
    FILE *f = fopen(path, "rb");
    if (!f) return fail(REFIT_ERROR, "cannot open the model file %s", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = malloc(size > 0 ? (size_t)size : 1);
    if (!data || fread(data, 1, (size_t)size, f) != (size_t)size) { fclose(f); free(data); return fail(REFIT_ERROR, "cannot read %s", path); }
    fclose(f);
    refit_engine *e = calloc(1, sizeof *e);
    if (!e) { free(data); return fail(REFIT_ERROR, "out of memory%s", NULL); }
    pthread_rwlock_init(&e->lock, NULL);
    e->refit_enabled = !refit_disabled(options);
    refit_status st = REFIT_OK;
    buf b = {data, data + size}, g = {0, 0}, s;
    uint32_t num, wire; uint64_t v;
    while (b.p < b.end && field(&b, &num, &wire, &v, &s))
        if (num == 7 && wire == 2) g = s;
    if (!g.p) st = fail(REFIT_ERROR, "%s: no graph in the model", path);
    value_info ins[8] = {{0}};
    uint32_t n_ins = 0;
    while (st == REFIT_OK && g.p < g.end) {
        if (!field(&g, &num, &wire, &v, &s)) { st = fail(REFIT_ERROR, "%s: malformed graph", path); break; }
        if (wire != 2) continue;
        if (num == 1) {
            if (e->n_nodes == MAX_ITEMS) { st = fail(REFIT_UNSUPPORTED, "more than 64 nodes%s", NULL); break; }
            st = parse_node(s, &e->nodes[e->n_nodes++]);
        } else if (num == 5) {
            if (e->n_weights == MAX_ITEMS) { st = fail(REFIT_UNSUPPORTED, "more than 64 initializers%s", NULL); break; }
            st = parse_tensor(s, &e->weights[e->n_weights++]);
        } else if (num == 11 && n_ins < 8) st = parse_value_info(s, &ins[n_ins++]);
        else if (num == 12 && e->n_outputs < 4) st = parse_value_info(s, &e->outputs[e->n_outputs++]);
    }
    /* Graph inputs that are not initializers are the model's inputs. */
    for (uint32_t i = 0; st == REFIT_OK && i < n_ins; i++) {
        int is_weight = 0;
        for (uint32_t w = 0; w < e->n_weights; w++)
            if (ins[i].name && !strcmp(ins[i].name, e->weights[w].name)) is_weight = 1;
        if (is_weight) { free(ins[i].name); continue; }
        if (ins[i].rank != 4) st = fail(REFIT_UNSUPPORTED, "input '%s' is not NCHW: this engine runs 2-D convolutions only", ins[i].name);
        else if (e->n_inputs < 4) e->inputs[e->n_inputs++] = ins[i];
    }
    for (uint32_t w = 0; st == REFIT_OK && w < e->n_weights; w++) {
        tensor *t = &e->weights[w];
        if (t->rank == 4 || t->rank == 1) e->weight_desc[w] = (refit_tensor_desc){t->name, REFIT_F32, t->rank, t->dims};
        else st = fail(REFIT_UNSUPPORTED, "weight '%s' is not a 2-D conv kernel or a bias", t->name);
    }
    free(data);
    if (st != REFIT_OK) { engine_destroy(e); return st; }
    *out = e;
    return REFIT_OK;
}

static void engine_destroy(refit_engine *e) {
    if (!e) return;
    for (uint32_t i = 0; i < e->n_weights; i++) { free(e->weights[i].name); free(e->weights[i].values); }
    for (uint32_t i = 0; i < e->n_nodes; i++) {
        for (int k = 0; k < e->nodes[i].n_in; k++) free(e->nodes[i].in[k]);
        free(e->nodes[i].out);
    }
    for (uint32_t i = 0; i < e->n_inputs; i++) free(e->inputs[i].name);
    for (uint32_t i = 0; i < e->n_outputs; i++) free(e->outputs[i].name);
    pthread_rwlock_destroy(&e->lock);
    free(e);
}

static refit_status engine_describe(const refit_engine *e, refit_engine_info *out) {
    out->name = "c-example";
    out->version = "1";
    out->concurrency = REFIT_ATOMIC;
    out->failed_refit = REFIT_ROLLS_BACK;
    out->subset = REFIT_SUBSET_ACCEPTED;
    out->non_finite = REFIT_NON_FINITE_REJECTED;
    out->refit_enabled = e->refit_enabled;
    return REFIT_OK;
}

static refit_status input_count(const refit_engine *e, uint32_t *n) { *n = e->n_inputs; return REFIT_OK; }
static refit_status output_count(const refit_engine *e, uint32_t *n) { *n = e->n_outputs; return REFIT_OK; }
static refit_status weight_count(const refit_engine *e, uint32_t *n) { *n = e->n_weights; return REFIT_OK; }
static refit_status input(const refit_engine *e, uint32_t i, refit_tensor_desc *out) {
    if (i >= e->n_inputs) return fail(REFIT_INVALID_ARGUMENT, "input index out of range%s", NULL);
    *out = (refit_tensor_desc){e->inputs[i].name, REFIT_F32, e->inputs[i].rank, e->inputs[i].dims};
    return REFIT_OK;
}
static refit_status output(const refit_engine *e, uint32_t i, refit_tensor_desc *out) {
    if (i >= e->n_outputs) return fail(REFIT_INVALID_ARGUMENT, "output index out of range%s", NULL);
    *out = (refit_tensor_desc){e->outputs[i].name, REFIT_F32, e->outputs[i].rank, e->outputs[i].dims};
    return REFIT_OK;
}
static refit_status weight(const refit_engine *e, uint32_t i, refit_tensor_desc *out) {
    if (i >= e->n_weights) return fail(REFIT_INVALID_ARGUMENT, "weight index out of range%s", NULL);
    *out = e->weight_desc[i];
    return REFIT_OK;
}

/* ---- inference ---- */

typedef struct { char *name; int64_t dims[4]; float *v; } act;

struct refit_context {
    refit_engine *engine;
    act acts[MAX_ITEMS + 4];
    int n_acts;
    refit_tensor outs[4];
};

static refit_status context_create(refit_engine *e, refit_context **out) {
    refit_context *c = calloc(1, sizeof *c);
    if (!c) return fail(REFIT_ERROR, "out of memory%s", NULL);
    c->engine = e;
    *out = c;
    return REFIT_OK;
}
static void clear_acts(refit_context *c) {
    for (int i = 0; i < c->n_acts; i++) free(c->acts[i].v);
    c->n_acts = 0;
}
static void context_destroy(refit_context *c) { if (c) { clear_acts(c); free(c); } }

static act *find_act(refit_context *c, const char *name) {
    for (int i = 0; i < c->n_acts; i++) if (!strcmp(c->acts[i].name, name)) return &c->acts[i];
    return NULL;
}
static tensor *find_weight(refit_engine *e, const char *name) {
    for (uint32_t i = 0; i < e->n_weights; i++) if (!strcmp(e->weights[i].name, name)) return &e->weights[i];
    return NULL;
}

static refit_status conv(refit_engine *e, const node *nd, const act *x, act *y) {
    tensor *w = find_weight(e, nd->in[1]);
    tensor *b = nd->n_in > 2 ? find_weight(e, nd->in[2]) : NULL;
    if (!w || w->rank != 4) return fail(REFIT_ERROR, "conv weight '%s' not found", nd->in[1]);
    int64_t N = x->dims[0], C = x->dims[1], H = x->dims[2], W = x->dims[3];
    int64_t M = w->dims[0], Cg = w->dims[1], KH = w->dims[2], KW = w->dims[3], G = nd->group;
    if (G < 1 || Cg * G != C || M % G) return fail(REFIT_SHAPE_MISMATCH, "node '%s': channels do not fit the weight", nd->out);
    int64_t pb[2] = {nd->pads[0], nd->pads[1]}, pe[2] = {nd->pads[2], nd->pads[3]};
    int64_t in[2] = {H, W}, k[2] = {KH, KW}, o[2];
    for (int d = 0; d < 2; d++) {
        int64_t s = nd->strides[d], ext = (k[d] - 1) * nd->dilations[d] + 1;
        if (nd->auto_pad == 1) pb[d] = pe[d] = 0;
        if (nd->auto_pad >= 2) {
            int64_t out = (in[d] + s - 1) / s, total = (out - 1) * s + ext - in[d];
            if (total < 0) total = 0;
            pb[d] = nd->auto_pad == 2 ? total / 2 : total - total / 2;
            pe[d] = total - pb[d];
        }
        if (in[d] + pb[d] + pe[d] < ext) return fail(REFIT_SHAPE_MISMATCH, "node '%s': input smaller than the kernel", nd->out);
        o[d] = (in[d] + pb[d] + pe[d] - ext) / s + 1;
    }
    y->dims[0] = N; y->dims[1] = M; y->dims[2] = o[0]; y->dims[3] = o[1];
    y->v = calloc((size_t)(N * M * o[0] * o[1]) + 1, sizeof(float));
    if (!y->v) return fail(REFIT_ERROR, "out of memory%s", NULL);
    int64_t Mg = M / G;
    /* Loop order: image, output channel, input channel, kernel row, kernel
     * column, then every output position: another summation order than
     * the harness's reference engine and oracle. */
    for (int64_t n = 0; n < N; n++)
        for (int64_t m = 0; m < M; m++) {
            float *yp = y->v + (n * M + m) * o[0] * o[1];
            for (int64_t i = 0; i < o[0] * o[1]; i++) yp[i] = b ? b->values[m] : 0.0f;
            int64_t g = m / Mg;
            for (int64_t c = 0; c < Cg; c++) {
                const float *xp = x->v + (n * C + g * Cg + c) * H * W;
                for (int64_t kh = 0; kh < KH; kh++)
                    for (int64_t kw = 0; kw < KW; kw++) {
                        float wv = w->values[((m * Cg + c) * KH + kh) * KW + kw];
                        for (int64_t oh = 0; oh < o[0]; oh++) {
                            int64_t ih = oh * nd->strides[0] + kh * nd->dilations[0] - pb[0];
                            if (ih < 0 || ih >= H) continue;
                            for (int64_t ow = 0; ow < o[1]; ow++) {
                                int64_t iw = ow * nd->strides[1] + kw * nd->dilations[1] - pb[1];
                                if (iw < 0 || iw >= W) continue;
                                yp[oh * o[1] + ow] += wv * xp[ih * W + iw];
                            }
                        }
                    }
            }
        }
    return REFIT_OK;
}

static refit_status run_graph(refit_context *c) {
    refit_engine *e = c->engine;
    for (uint32_t i = 0; i < e->n_nodes; i++) {
        const node *nd = &e->nodes[i];
        act *x = find_act(c, nd->in[0]);
        if (!x) return fail(REFIT_ERROR, "value '%s' is not computed before its use", nd->in[0]);
        act y = {nd->out, {0}, NULL};
        if (nd->relu) {
            size_t n = (size_t)(x->dims[0] * x->dims[1] * x->dims[2] * x->dims[3]);
            memcpy(y.dims, x->dims, sizeof y.dims);
            y.v = malloc(n * sizeof(float) + 1);
            if (!y.v) return fail(REFIT_ERROR, "out of memory%s", NULL);
            for (size_t k = 0; k < n; k++) y.v[k] = x->v[k] < 0 ? 0 : x->v[k];
        } else {
            refit_status st = conv(e, nd, x, &y);
            if (st != REFIT_OK) return st;
        }
        c->acts[c->n_acts++] = y;
    }
    return REFIT_OK;
}

static refit_status infer(refit_context *c, const refit_tensor *in, uint32_t n, const refit_tensor **out, uint32_t *n_out) {
    refit_engine *e = c->engine;
    if (n != e->n_inputs) return fail(REFIT_INVALID_ARGUMENT, "wrong number of inputs%s", NULL);
    clear_acts(c);
    for (uint32_t i = 0; i < n; i++) {
        if (in[i].dtype != REFIT_F32) return fail(REFIT_DTYPE_MISMATCH, "input '%s': expected f32", e->inputs[i].name);
        if (in[i].rank != 4) return fail(REFIT_SHAPE_MISMATCH, "input '%s': expected rank 4", e->inputs[i].name);
        size_t count = 1;
        for (int d = 0; d < 4; d++) {
            if (in[i].dims[d] < 1 || (e->inputs[i].dims[d] >= 0 && in[i].dims[d] != e->inputs[i].dims[d]))
                return fail(REFIT_SHAPE_MISMATCH, "input '%s': shape differs from the model's", e->inputs[i].name);
            count *= (size_t)in[i].dims[d];
        }
        if (in[i].byte_len != count * 4) return fail(REFIT_SHAPE_MISMATCH, "input '%s': byte count differs from its dims", e->inputs[i].name);
        if ((uintptr_t)in[i].data % 64) return fail(REFIT_INVALID_ARGUMENT, "input '%s': data is not 64-byte aligned", e->inputs[i].name);
        act a = {e->inputs[i].name, {in[i].dims[0], in[i].dims[1], in[i].dims[2], in[i].dims[3]}, malloc(count * 4 + 1)};
        if (!a.v) return fail(REFIT_ERROR, "out of memory%s", NULL);
        memcpy(a.v, in[i].data, count * 4);
        c->acts[c->n_acts++] = a;
    }
#ifndef FAULT_TORN
    pthread_rwlock_rdlock(&e->lock);
#endif
    refit_status st = run_graph(c);
#ifndef FAULT_TORN
    pthread_rwlock_unlock(&e->lock);
#endif
    if (st != REFIT_OK) return st;
    for (uint32_t i = 0; i < e->n_outputs; i++) {
        act *y = find_act(c, e->outputs[i].name);
        if (!y) return fail(REFIT_ERROR, "output '%s' is computed by no node", e->outputs[i].name);
        c->outs[i] = (refit_tensor){REFIT_F32, 4, y->dims, y->v, (uint64_t)(y->dims[0] * y->dims[1] * y->dims[2] * y->dims[3]) * 4};
    }
    *out = c->outs;
    *n_out = e->n_outputs;
    return REFIT_OK;
}

/* ---- refit ---- */

struct refit_refitter {
    refit_engine *engine;
    float *staged[MAX_ITEMS];
#ifdef FAULT_READS_AFTER_RETURN
    const float *source[MAX_ITEMS];
#endif
    const char *missing[MAX_ITEMS];
};

static refit_status refitter_create(refit_engine *e, refit_refitter **out) {
    if (!e->refit_enabled) return fail(REFIT_DISABLED, "refit is not enabled: the engine was built without enable_refit%s", NULL);
    refit_refitter *r = calloc(1, sizeof *r);
    if (!r) return fail(REFIT_ERROR, "out of memory%s", NULL);
    r->engine = e;
    *out = r;
    return REFIT_OK;
}
static void refitter_destroy(refit_refitter *r) {
    if (!r) return;
    for (int i = 0; i < MAX_ITEMS; i++) free(r->staged[i]);
    free(r);
}

/* "[1, 1, 3, 3]" into out. */
static void shape_text(const int64_t *dims, uint32_t rank, char *out, size_t size) {
    size_t n = (size_t)snprintf(out, size, "[");
    for (uint32_t d = 0; d < rank && n < size; d++)
        n += (size_t)snprintf(out + n, size - n, d ? ", %lld" : "%lld", (long long)dims[d]);
    if (n < size) snprintf(out + n, size - n, "]");
}

static refit_status set_named_weights(refit_refitter *r, const char *name, const refit_tensor *t) {
    refit_engine *e = r->engine;
    uint32_t i = 0;
    while (i < e->n_weights && strcmp(e->weights[i].name, name)) i++;
    if (i == e->n_weights) return fail(REFIT_UNKNOWN_WEIGHT, "unknown weight '%s'", name);
    tensor *w = &e->weights[i];
    /* Validate everything here, before anything is staged: a refused
     * weight stages nothing and keeps what was staged before. */
    if (t->dtype != REFIT_F32) return fail(REFIT_DTYPE_MISMATCH, "weight '%s': expected dtype f32", name);
    int same = t->rank == w->rank;
    for (uint32_t d = 0; same && d < w->rank; d++) same = t->dims[d] == w->dims[d];
    if (!same) {
        char want[96], got[96];
        shape_text(w->dims, w->rank, want, sizeof want);
        shape_text(t->dims, t->rank, got, sizeof got);
        snprintf(last_error_buf, sizeof last_error_buf, "weight '%s': expected shape %s, found %s", name, want, got);
        return REFIT_SHAPE_MISMATCH;
    }
    if (t->byte_len != w->count * 4) {
        snprintf(last_error_buf, sizeof last_error_buf, "weight '%s': expected %zu bytes for its shape, found %llu",
                 name, w->count * 4, (unsigned long long)t->byte_len);
        return REFIT_SHAPE_MISMATCH;
    }
    /* The harness passes data 64-byte aligned (what device DMA needs). */
    if ((uintptr_t)t->data % 64) return fail(REFIT_INVALID_ARGUMENT, "weight '%s': data is not 64-byte aligned", name);
    const float *v = t->data;
    for (size_t k = 0; k < w->count; k++)
        if (!isfinite(v[k])) return fail(REFIT_NON_FINITE, "weight '%s': holds a non-finite value", name);
#ifdef FAULT_SKIPS_SEEN_ADDRESS
    if (e->seen[i] == t->data) return REFIT_OK;
    e->seen[i] = t->data;
#endif
    float *copy = malloc(w->count * 4 + 1);
    if (!copy) return fail(REFIT_ERROR, "out of memory%s", NULL);
#ifdef FAULT_READS_AFTER_RETURN
    r->source[i] = v;
#else
    memcpy(copy, v, w->count * 4);
#endif
    free(r->staged[i]);
    r->staged[i] = copy;
    return REFIT_OK;
}

static refit_status missing(refit_refitter *r, const char *const **names, uint32_t *count) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->engine->n_weights; i++)
        if (!r->staged[i]) r->missing[n++] = r->engine->weights[i].name;
    *names = r->missing;
    *count = n;
    return REFIT_OK;
}

static refit_status refit(refit_refitter *r) {
    refit_engine *e = r->engine;
#ifdef FAULT_READS_AFTER_RETURN
    for (uint32_t i = 0; i < e->n_weights; i++)
        if (r->staged[i] && r->source[i]) memcpy(r->staged[i], r->source[i], e->weights[i].count * 4);
#endif
#ifdef FAULT_TORN
    /* In place, value by value, while inferences read them. */
    for (uint32_t i = 0; i < e->n_weights; i++) {
        if (!r->staged[i]) continue;
        volatile float *dst = e->weights[i].values;
        for (size_t k = 0; k < e->weights[i].count; k++) {
            dst[k] = r->staged[i][k];
            if (k == e->weights[i].count / 2) sched_yield();
        }
    }
#else
    pthread_rwlock_wrlock(&e->lock);
    for (uint32_t i = 0; i < e->n_weights; i++) {
#ifdef FAULT_STALE_BIAS
        if (e->weights[i].rank == 1) continue;
#endif
        if (r->staged[i]) memcpy(e->weights[i].values, r->staged[i], e->weights[i].count * 4);
    }
    pthread_rwlock_unlock(&e->lock);
#endif
    for (uint32_t i = 0; i < e->n_weights; i++) { free(r->staged[i]); r->staged[i] = NULL; }
    return REFIT_OK;
}

static const char *last_error(void) { return last_error_buf; }

#if defined(FAULT_NUMERICS_EXT) || defined(FAULT_BAD_NUMERICS_EXT)
/* The optional engine_numerics_ext slot: refits are bit-identical to a fresh
 * build (the weights are copied and nothing is derived from them), and the
 * allowances this engine's functions need (it has none: tight values). The
 * harness fills defaults and struct_size; write only what fits. */
static refit_status engine_numerics_ext(const refit_engine *e, refit_numerics_ext *out) {
    (void)e;
    if (!out || out->struct_size < sizeof *out)
        return fail(REFIT_INVALID_ARGUMENT, "refit_numerics_ext too small%s", NULL);
    out->refit_bit_identical = 1;
    for (int f = 0; f < REFIT_FAMILIES; f++) {
        out->allowance_rel[f] = 1.0;
        out->allowance_abs[f] = 2.0;
    }
#ifdef FAULT_BAD_NUMERICS_EXT
    out->allowance_abs[REFIT_FAMILY_SOFTMAX] = -1.0;
#endif
    return REFIT_OK;
}
#endif

static const refit_plugin_api API = {
    REFIT_PLUGIN_ABI_VERSION,
#ifdef FAULT_V1_TABLE
    /* A plugin built before the optional slots: its table ends there. */
    offsetof(refit_plugin_api, engine_numerics),
#else
    sizeof(refit_plugin_api),
#endif
    engine_create, engine_destroy, engine_describe,
    input_count, input, output_count, output, weight_count, weight,
    context_create, context_destroy, infer,
    refitter_create, refitter_destroy, set_named_weights, missing, refit,
    last_error,
    NULL, /* engine_numerics: the default, f32 */
#if defined(FAULT_NUMERICS_EXT) || defined(FAULT_BAD_NUMERICS_EXT)
    engine_numerics_ext,
#else
    NULL, /* engine_numerics_ext: the defaults */
#endif
};

REFIT_EXPORT const refit_plugin_api *refit_plugin_get_api(uint32_t abi_version) {
    return abi_version == REFIT_PLUGIN_ABI_VERSION ? &API : NULL;
}

/*
 * refit_plugin.h -- the refit-harness plugin ABI, version 1.
 *
 * A vendor runtime (MagicMind, TensorRT, an in-house engine) comes under
 * refit-harness through a small shim library that implements this header.
 * The harness loads the library with dlopen(RTLD_NOW), calls the one
 * exported entry point, refit_plugin_get_api(), and from then on talks only
 * to the table of functions it returns. Everything needed to write a shim
 * is in this file; no Rust is involved.
 *
 * VERSIONING
 *   refit_plugin_get_api(requested) returns a table for ABI version
 *   `requested`, or NULL if the library does not support that version. The
 *   table starts with abi_version and struct_size (sizeof the table the
 *   library was built with). New versions only append fields, so a table
 *   larger than the harness expects is fine; a smaller one is refused.
 *   Every function pointer up to last_error must be non-NULL. Slots after
 *   last_error are optional additions to version 1: a library built against
 *   an older header (struct_size ending before them) or leaving them NULL
 *   gets the documented default, so a version-1 plugin keeps loading.
 *
 * STATUS AND ERRORS
 *   Every function that can fail returns a refit_status. REFIT_OK (0) means
 *   success; anything else is failure, and the function must then have set
 *   the calling thread's last-error message, which the harness reads at once
 *   through last_error() and shows to the user verbatim. Make it say what
 *   was expected and what was found, and name the tensor or file: for
 *   example "weight 'conv.weight': expected shape [1, 1, 3, 3], found [10]".
 *   A failure with an empty message is reported as a defect of the plugin.
 *   last_error() returns a NUL-terminated UTF-8 string owned by the library,
 *   valid until the next call into the library on the same thread; it never
 *   returns NULL (return "" when there is no message).
 *
 * OWNERSHIP AND LIFETIME
 *   - Handles (refit_engine, refit_context, refit_refitter) are opaque and
 *     owned by the library; the harness releases each with its destroy
 *     function exactly once. The harness destroys every context and refitter
 *     before the engine they came from, and unloads the library last.
 *   - Strings and arrays the harness passes in (model_path, options_json,
 *     weight names, tensor dims and data) are only borrowed for the duration
 *     of the call: copy what you keep.
 *   - Strings and arrays the library hands out (names in refit_engine_info
 *     and refit_tensor_desc, dims) must stay valid until the engine is
 *     destroyed. Outputs of infer() and the names from refitter_missing()
 *     must stay valid until the next call on the same context or refitter,
 *     or its destruction.
 *   - No function may let a C++ exception or any other unwinding escape.
 *
 * THREADS
 *   - engine_* describe/list functions, context_create and refitter_create
 *     may be called from any thread at any time, concurrently.
 *   - A context is used by one thread at a time; different contexts infer
 *     concurrently.
 *   - A refitter is used by one thread at a time; different refitters may
 *     stage and refit concurrently.
 *   - Whether refitter_refit may run while contexts infer is what the engine
 *     declares in refit_engine_info.concurrency: REFIT_ATOMIC promises that
 *     every inference sees exactly one whole weight version and that an
 *     inference started after refitter_refit returned sees the new one;
 *     REFIT_QUIESCED asks the harness never to infer during a refit, and the
 *     harness enforces that.
 *
 * TENSORS
 *   Dense, row-major, little-endian. dims[i] >= 1, or -1 for a dimension the
 *   model leaves symbolic (in descriptions only). byte_len is the size of
 *   data in bytes and is NOT guaranteed to match dims: validating it is part
 *   of the engine's job, and the harness tests that it is done.
 *   ALIGNMENT: data the harness passes (inputs to infer, weights to
 *   refitter_set_named_weights) starts at a 64-byte-aligned address, so a
 *   shim may hand it to a device DMA engine directly. Output data the
 *   library returns needs only the alignment of its dtype.
 *
 * WHAT EACH CALL MUST DO (what the checks hold a shim to)
 *   - options_json is never NULL from the harness: a JSON object with
 *     "enable_refit" (true or false) and, unchanged, every member of the
 *     user's --engine-options (or REFIT_ENGINE_OPTIONS in cargo test), e.g.
 *     {"enable_refit":true,"device":1,"precision":"f16"}. Parse it as JSON
 *     (whitespace and key order vary). A NULL options_json, or one without
 *     "enable_refit", means enable_refit true.
 *   - The harness's own keys: "enable_refit" is the only one it sends.
 *     ("engine": "reference" | "null" is the reference plugin's own option,
 *     which the harness sends to that plugin alone, for its benchmarks.)
 *     Every other key is the user's. Refuse a key you do not take with
 *     REFIT_INVALID_ARGUMENT and a last_error naming it ("unknown option
 *     'devcie'"): `check` then stops before any scenario, while a key
 *     silently ignored runs the whole suite on options the user did not
 *     mean. A shim that hands the options on to its SDK, which judges them
 *     itself, says so in its documentation.
 *   - Built without enable_refit, the engine still infers; refitter_create
 *     returns REFIT_DISABLED (and no other call does), and engine_describe
 *     reports refit_enabled 0.
 *   - refitter_missing is per refitter: the refittable weights this
 *     refitter has not staged since its own last successful refit. A
 *     successful refit clears the refitter's staged set, so afterwards every
 *     weight is missing again. A refit with nothing staged succeeds, changes
 *     nothing and resets nothing.
 *   - A failed refitter_refit keeps what was staged (the caller can stage
 *     the rest and refit again) and, under REFIT_ROLLS_BACK, serves exactly
 *     the weights from before the call. A failed refitter_set_named_weights
 *     stages nothing and keeps what was staged before it.
 *   - Under REFIT_ATOMIC, two refitters may refit at the same time, each
 *     with different weights staged: both refits must take effect. Build
 *     each new weight version from the latest published one under a lock,
 *     or an update is lost (the harness's stress_disjoint catches it).
 *   - Threads the library starts (workers, device pollers) must be joined
 *     by engine_destroy: the harness may unload the library right after.
 *   - The harness reads last_error only right after a call that failed; a
 *     successful call need not clear it.
 *   - REFIT_UNSUPPORTED from engine_create (the model uses something the
 *     engine lacks) makes that check a skip with last_error as the reason;
 *     from any other call it is a failure like any other status.
 *   - Never abort, exit or hang: the harness runs each check in a child
 *     process and reports a signal as CRASHED and a call past --timeout as
 *     HUNG, naming the call in flight, but the check fails either way.
 */
#ifndef REFIT_PLUGIN_H
#define REFIT_PLUGIN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define REFIT_PLUGIN_ABI_VERSION 1u

#if defined(_WIN32)
#define REFIT_EXPORT __declspec(dllexport)
#else
#define REFIT_EXPORT __attribute__((visibility("default")))
#endif

typedef int32_t refit_status;
#define REFIT_OK 0                 /* success */
#define REFIT_ERROR 1              /* any other failure */
#define REFIT_INVALID_ARGUMENT 2   /* a NULL or malformed argument */
#define REFIT_UNKNOWN_WEIGHT 3     /* no refittable weight by that name */
#define REFIT_SHAPE_MISMATCH 4     /* dims, or byte_len against dims */
#define REFIT_DTYPE_MISMATCH 5     /* dtype differs from the weight's */
#define REFIT_NON_FINITE 6         /* NaN or infinity where rejected */
#define REFIT_DISABLED 7           /* engine built without enable_refit */
#define REFIT_MISSING_WEIGHTS 8    /* refit needs every weight staged */
#define REFIT_UNSUPPORTED 9        /* the model uses something unsupported */

typedef int32_t refit_dtype;
#define REFIT_F32 1
#define REFIT_F16 2
#define REFIT_I32 3

/* The contract the engine declares (see the harness's docs::contract). */
#define REFIT_ATOMIC 0             /* concurrency */
#define REFIT_QUIESCED 1
#define REFIT_ROLLS_BACK 0         /* failed_refit */
#define REFIT_MAY_BE_PARTIAL 1
#define REFIT_SUBSET_ACCEPTED 0    /* subset */
#define REFIT_REQUIRES_ALL 1
#define REFIT_NON_FINITE_REJECTED 0 /* non_finite */
#define REFIT_NON_FINITE_SERVED 1

/* The arithmetic the engine computes in (refit_numerics.precision). The
 * harness's oracle bounds the rounding error of each output element for the
 * declared precision; see engine_numerics below. Every precision sums in f32;
 * the operands (weights, activations) are rounded to:
 *   F32:  f32 (nothing rounded), outputs and activations stored as f32;
 *   TF32: a 10-bit mantissa, stored as f32;
 *   F16:  f16, stored as f16;
 *   BF16: bf16, stored as bf16. */
#define REFIT_PRECISION_F32 0
#define REFIT_PRECISION_TF32 1
#define REFIT_PRECISION_F16 2
#define REFIT_PRECISION_BF16 3

typedef struct refit_engine refit_engine;
typedef struct refit_context refit_context;
typedef struct refit_refitter refit_refitter;

typedef struct refit_engine_info {
    const char *name;      /* e.g. "magicmind" */
    const char *version;   /* e.g. "1.13.0" */
    int32_t concurrency;   /* REFIT_ATOMIC or REFIT_QUIESCED */
    int32_t failed_refit;  /* REFIT_ROLLS_BACK or REFIT_MAY_BE_PARTIAL */
    int32_t subset;        /* REFIT_SUBSET_ACCEPTED or REFIT_REQUIRES_ALL */
    int32_t non_finite;    /* REFIT_NON_FINITE_REJECTED or _SERVED */
    int32_t refit_enabled; /* 1 if built with enable_refit, else 0 */
} refit_engine_info;

typedef struct refit_numerics {
    int32_t precision;   /* REFIT_PRECISION_* */
    double error_factor; /* >= 1: how far past the rigorous bound for
                          * `precision` the engine's error may go (1 for any
                          * summation order; Winograd or FFT convolutions need
                          * more). Above 1, integer-valued outputs need not be
                          * exact. The harness reports observed error / bound
                          * per check, to set this from data. */
} refit_numerics;

/* Function families, for the implementation allowance (see
 * refit_numerics_ext): the oracle grants an engine's own implementation of a
 * function allowance_rel[f] units of roundoff of |f(x)| plus
 * allowance_abs[f] units of max(1, |x|), the unit roundoff being the
 * declared precision's. Defaults 8 and 8 (they pass ONNX Runtime's CPU
 * functions: Sigmoid within 2.5 u absolutely, Gelu within 7.5 u of the
 * input's scale). */
#define REFIT_FAMILY_ACTIVATION 0    /* Sigmoid, Tanh, Erf, Gelu, Sqrt, Pow, HardSigmoid, HardSwish */
#define REFIT_FAMILY_SOFTMAX 1       /* Softmax's exp */
#define REFIT_FAMILY_NORMALIZATION 2 /* LayerNormalization's sqrt and division */
#define REFIT_FAMILIES 3

/* What an engine declares about its arithmetic beyond refit_numerics. The
 * harness fills every field with its default and struct_size with the size
 * it knows before the call; a plugin writes only the fields that fit in
 * struct_size (fields are only ever appended), so either side may be newer. */
typedef struct refit_numerics_ext {
    uint32_t struct_size;          /* set by the harness: sizeof as it knows it */
    int32_t refit_bit_identical;   /* 1: after a refit, outputs are bit for bit a
                                    * fresh build's with the same weights; 0
                                    * (default): within the oracle's bound */
    double allowance_rel[REFIT_FAMILIES]; /* >= 0, default 8 */
    double allowance_abs[REFIT_FAMILIES]; /* >= 0, default 8 */
} refit_numerics_ext;

/* A named tensor's description: an input, an output or a weight. */
typedef struct refit_tensor_desc {
    const char *name;
    refit_dtype dtype;
    uint32_t rank;
    const int64_t *dims; /* rank entries; -1 for a symbolic dimension */
} refit_tensor_desc;

/* Tensor data passed across the ABI. */
typedef struct refit_tensor {
    refit_dtype dtype;
    uint32_t rank;
    const int64_t *dims;
    const void *data;
    uint64_t byte_len;
} refit_tensor;

typedef struct refit_plugin_api {
    uint32_t abi_version; /* REFIT_PLUGIN_ABI_VERSION */
    uint32_t struct_size; /* sizeof(refit_plugin_api) */

    /* Builds an engine for the ONNX model at model_path. options_json is a
     * JSON object, e.g. {"enable_refit":true,"device":0} (see WHAT EACH CALL
     * MUST DO); refuse keys you do not take (REFIT_INVALID_ARGUMENT).
     * A model the engine cannot run (an op, a number of spatial dimensions,
     * a dtype it lacks) returns REFIT_UNSUPPORTED with the reason in
     * last_error: the harness reports that check as skipped, not failed. */
    refit_status (*engine_create)(const char *model_path, const char *options_json,
                                  refit_engine **out);
    void (*engine_destroy)(refit_engine *engine);
    refit_status (*engine_describe)(const refit_engine *engine, refit_engine_info *out);

    /* Inputs, outputs and refittable weights: a count, then each by index. */
    refit_status (*engine_input_count)(const refit_engine *engine, uint32_t *count);
    refit_status (*engine_input)(const refit_engine *engine, uint32_t index, refit_tensor_desc *out);
    refit_status (*engine_output_count)(const refit_engine *engine, uint32_t *count);
    refit_status (*engine_output)(const refit_engine *engine, uint32_t index, refit_tensor_desc *out);
    refit_status (*engine_weight_count)(const refit_engine *engine, uint32_t *count);
    refit_status (*engine_weight)(const refit_engine *engine, uint32_t index, refit_tensor_desc *out);

    /* A per-thread inference context. */
    refit_status (*context_create)(refit_engine *engine, refit_context **out);
    void (*context_destroy)(refit_context *context);
    /* Runs the model. *outputs receives an array of *n_outputs tensors owned
     * by the context, valid until the next infer on it or its destruction. */
    refit_status (*infer)(refit_context *context, const refit_tensor *inputs, uint32_t n_inputs,
                          const refit_tensor **outputs, uint32_t *n_outputs);

    /* Refit: stage named weights, then apply everything staged. */
    refit_status (*refitter_create)(refit_engine *engine, refit_refitter **out);
    void (*refitter_destroy)(refit_refitter *refitter);
    /* Validates and copies one weight; a failed call stages nothing and
     * leaves what was staged before. A name staged twice keeps the later. */
    refit_status (*refitter_set_named_weights)(refit_refitter *refitter, const char *name,
                                               const refit_tensor *weights);
    /* The refittable weights not staged since the last successful refit.
     * *names receives an array of *count strings owned by the refitter. */
    refit_status (*refitter_missing)(refit_refitter *refitter, const char *const **names,
                                     uint32_t *count);
    /* Applies everything staged and clears it; with nothing staged, a no-op. */
    refit_status (*refitter_refit)(refit_refitter *refitter);

    /* The calling thread's last error message; never NULL. */
    const char *(*last_error)(void);

    /* ---- Optional slots (see VERSIONING): NULL or absent = default. ---- */

    /* The engine's precision and error factor. Default: REFIT_PRECISION_F32,
     * error_factor 1. */
    refit_status (*engine_numerics)(const refit_engine *engine, refit_numerics *out);

    /* The function allowances and whether refits are bit-identical to a
     * fresh build (refit_numerics_ext). Default: every field's default. */
    refit_status (*engine_numerics_ext)(const refit_engine *engine, refit_numerics_ext *out);
} refit_plugin_api;

/* The one exported entry point. Returns NULL for an unsupported version. */
REFIT_EXPORT const refit_plugin_api *refit_plugin_get_api(uint32_t abi_version);

#ifdef __cplusplus
}
#endif

#endif /* REFIT_PLUGIN_H */

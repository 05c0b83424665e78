/*
 * run_model.c: loads a compiled seqc artifact through the C API (seqc.h), binds its weights,
 * runs it on generated inputs and prints every output.
 *
 *   seqc compile ir-specs/linear_attention.seq -o /tmp/la.seqc
 *   cargo build -p seqc-capi
 *   cc -std=c11 -Iruntime/include runtime/examples/c/run_model.c \
 *      -Ltarget/debug -lseqc_capi -Wl,-rpath,"$PWD/target/debug" -o run_model
 *   ./run_model /tmp/la.seqc WEIGHTS.safetensors B=1 T=5
 *
 * Arguments after the weights file bind the model's dims (NAME=VALUE). Every input axis
 * must be a number or a bound dim. Input j's element k is ((37k + 11j) mod 101 - 50) / 64
 * (exact in every float type; integers take (37k + 11j) mod 3, bools are true), so a test
 * can build the same inputs. Each output prints as a line `NAME DTYPE [SHAPE]` followed by
 * its values, eight per indented line. On failure it prints the status and the library's
 * message to stderr and exits with status 1.
 */

#include "seqc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *status_name(SeqcStatus s) {
    switch (s) {
    case SEQC_STATUS_OK: return "SEQC_STATUS_OK";
    case SEQC_STATUS_NULL_ARGUMENT: return "SEQC_STATUS_NULL_ARGUMENT";
    case SEQC_STATUS_INVALID_UTF8: return "SEQC_STATUS_INVALID_UTF8";
    case SEQC_STATUS_INVALID_ARGUMENT: return "SEQC_STATUS_INVALID_ARGUMENT";
    case SEQC_STATUS_OUT_OF_RANGE: return "SEQC_STATUS_OUT_OF_RANGE";
    case SEQC_STATUS_NOT_FOUND: return "SEQC_STATUS_NOT_FOUND";
    case SEQC_STATUS_IO: return "SEQC_STATUS_IO";
    case SEQC_STATUS_ARTIFACT: return "SEQC_STATUS_ARTIFACT";
    case SEQC_STATUS_WEIGHTS: return "SEQC_STATUS_WEIGHTS";
    case SEQC_STATUS_INPUT: return "SEQC_STATUS_INPUT";
    case SEQC_STATUS_KERNEL: return "SEQC_STATUS_KERNEL";
    case SEQC_STATUS_RUNTIME: return "SEQC_STATUS_RUNTIME";
    case SEQC_STATUS_PANIC: return "SEQC_STATUS_PANIC";
    case SEQC_STATUS_DEVICE: return "SEQC_STATUS_DEVICE";
    }
    return "unknown status";
}

static const char *dtype_name(SeqcDtype d) {
    switch (d) {
    case SEQC_DTYPE_F32: return "f32";
    case SEQC_DTYPE_F16: return "f16";
    case SEQC_DTYPE_BF16: return "bf16";
    case SEQC_DTYPE_I32: return "i32";
    case SEQC_DTYPE_I64: return "i64";
    case SEQC_DTYPE_BOOL: return "bool";
    }
    return "?";
}

static size_t dtype_size(SeqcDtype d) {
    switch (d) {
    case SEQC_DTYPE_F32: case SEQC_DTYPE_I32: return 4;
    case SEQC_DTYPE_F16: case SEQC_DTYPE_BF16: return 2;
    case SEQC_DTYPE_I64: return 8;
    case SEQC_DTYPE_BOOL: return 1;
    }
    return 0;
}

/* Reports a failed call and exits. */
#define CHECK(call)                                                                   \
    do {                                                                              \
        SeqcStatus s_ = (call);                                                       \
        if (s_ != SEQC_STATUS_OK) {                                                   \
            fprintf(stderr, "error: %s: %s\n", status_name(s_), seqc_last_error());   \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

static void fail(const char *msg, const char *what) {
    fprintf(stderr, "error: %s `%s`\n", msg, what);
    exit(1);
}

/* float <-> f16 / bf16 bit patterns (round to nearest even; inputs here are exact). */
static uint16_t to_bf16(float x) {
    uint32_t b;
    memcpy(&b, &x, 4);
    b += 0x7fff + ((b >> 16) & 1);
    return (uint16_t)(b >> 16);
}

static float from_bf16(uint16_t h) {
    uint32_t b = (uint32_t)h << 16;
    float x;
    memcpy(&x, &b, 4);
    return x;
}

static uint16_t to_f16(float x) {
    /* The generated inputs are multiples of 1/64 in [-1, 1]: normal or zero halves. */
    uint32_t b;
    memcpy(&b, &x, 4);
    uint32_t sign = (b >> 16) & 0x8000, exp = (b >> 23) & 0xff, man = b & 0x7fffff;
    if (exp == 0) return (uint16_t)sign;
    return (uint16_t)(sign | ((exp - 112) << 10) | (man >> 13));
}

static float from_f16(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    uint32_t b;
    if (exp == 0 && man == 0) {
        b = sign;
    } else if (exp == 0) { /* subnormal: renormalise */
        int e = -1;
        do { man <<= 1; e++; } while (!(man & 0x400));
        b = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    } else if (exp == 31) {
        b = sign | 0x7f800000 | (man << 13);
    } else {
        b = sign | ((exp + 112) << 23) | (man << 13);
    }
    float x;
    memcpy(&x, &b, 4);
    return x;
}

/* One axis of a symbolic shape: a number or a dim bound on the command line. */
static int64_t axis_value(const char *expr, int argc, char **argv, const char *input) {
    char *end;
    long long v = strtoll(expr, &end, 10);
    if (*expr != '\0' && *end == '\0') return v;
    size_t n = strlen(expr);
    for (int a = 3; a < argc; a++) {
        if (strncmp(argv[a], expr, n) == 0 && argv[a][n] == '=') return strtoll(argv[a] + n + 1, NULL, 10);
    }
    fprintf(stderr, "error: input `%s`: give a value for `%s` (NAME=VALUE)\n", input, expr);
    exit(1);
}

static void fill(void *data, SeqcDtype d, size_t n, size_t j) {
    for (size_t k = 0; k < n; k++) {
        long m = (long)((37 * k + 11 * j) % 101);
        float x = (float)(m - 50) / 64.0f;
        switch (d) {
        case SEQC_DTYPE_F32: ((float *)data)[k] = x; break;
        case SEQC_DTYPE_F16: ((uint16_t *)data)[k] = to_f16(x); break;
        case SEQC_DTYPE_BF16: ((uint16_t *)data)[k] = to_bf16(x); break;
        case SEQC_DTYPE_I32: ((int32_t *)data)[k] = (int32_t)(m % 3); break;
        case SEQC_DTYPE_I64: ((int64_t *)data)[k] = (int64_t)(m % 3); break;
        case SEQC_DTYPE_BOOL: ((uint8_t *)data)[k] = 1; break;
        }
    }
}

static double element(const SeqcTensorView *v, size_t k) {
    switch (v->dtype) {
    case SEQC_DTYPE_F32: return ((const float *)v->data)[k];
    case SEQC_DTYPE_F16: return from_f16(((const uint16_t *)v->data)[k]);
    case SEQC_DTYPE_BF16: return from_bf16(((const uint16_t *)v->data)[k]);
    case SEQC_DTYPE_I32: return ((const int32_t *)v->data)[k];
    case SEQC_DTYPE_I64: return (double)((const int64_t *)v->data)[k];
    case SEQC_DTYPE_BOOL: return ((const uint8_t *)v->data)[k];
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s ARTIFACT_DIR WEIGHTS.safetensors [DIM=VALUE ...]\n", argv[0]);
        return 2;
    }
    SeqcModel *model = NULL;
    CHECK(seqc_model_load(argv[1], argv[2], 0, &model));

    size_t n_inputs = 0;
    CHECK(seqc_model_count(model, SEQC_KIND_INPUT, &n_inputs));
    SeqcInput *inputs = calloc(n_inputs ? n_inputs : 1, sizeof *inputs);
    if (!inputs) fail("out of memory for", "inputs");
    for (size_t j = 0; j < n_inputs; j++) {
        SeqcTensorInfo info;
        CHECK(seqc_model_tensor(model, SEQC_KIND_INPUT, j, &info));
        int64_t *shape = calloc(info.rank ? info.rank : 1, sizeof *shape);
        if (!shape) fail("out of memory for", info.name);
        size_t n = 1;
        for (size_t a = 0; a < info.rank; a++) {
            shape[a] = axis_value(info.shape[a], argc, argv, info.name);
            if (shape[a] < 0) fail("negative size for input", info.name);
            n *= (size_t)shape[a];
        }
        size_t bytes = n * dtype_size(info.dtype);
        void *data = malloc(bytes ? bytes : 1);
        if (!data) fail("out of memory for", info.name);
        fill(data, info.dtype, n, j);
        inputs[j] = (SeqcInput){info.name, (uint32_t)info.dtype, shape, info.rank, data, bytes};
    }

    SeqcOutputs *outputs = NULL;
    CHECK(seqc_model_run(model, inputs, n_inputs, NULL, 0, &outputs));

    size_t n_outputs = 0;
    CHECK(seqc_outputs_count(outputs, &n_outputs));
    for (size_t i = 0; i < n_outputs; i++) {
        SeqcTensorView v;
        CHECK(seqc_outputs_get(outputs, i, &v));
        printf("%s %s [", v.name, dtype_name(v.dtype));
        size_t n = 1;
        for (size_t a = 0; a < v.rank; a++) {
            printf(a ? ", %lld" : "%lld", (long long)v.shape[a]);
            n *= (size_t)v.shape[a];
        }
        printf("]\n");
        for (size_t k = 0; k < n; k++) {
            printf(k % 8 == 0 ? "  %.9g" : " %.9g", element(&v, k));
            if (k % 8 == 7 || k + 1 == n) printf("\n");
        }
    }

    seqc_outputs_free(outputs);
    for (size_t j = 0; j < n_inputs; j++) {
        free((void *)inputs[j].shape);
        free((void *)inputs[j].data);
    }
    free(inputs);
    seqc_model_free(model);
    return 0;
}

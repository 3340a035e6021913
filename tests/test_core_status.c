/* Status codes, their text and names; version macros against the library; dtype helpers. */
#include "test_util.h"

TU_SUITE(status);
TU_SUITE(version);
TU_SUITE(dtype);

#define TU_CODE(c) {c, #c}
static const struct {
    clopt_status code;
    const char *name;
} all_codes[] = {
    TU_CODE(CLOPT_OK),
    TU_CODE(CLOPT_ERR_INVALID_ARGUMENT),
    TU_CODE(CLOPT_ERR_SHAPE_MISMATCH),
    TU_CODE(CLOPT_ERR_DTYPE_MISMATCH),
    TU_CODE(CLOPT_ERR_LENGTH_MISMATCH),
    TU_CODE(CLOPT_ERR_UNKNOWN_VARIABLE),
    TU_CODE(CLOPT_ERR_NOT_BUILT),
    TU_CODE(CLOPT_ERR_NO_GRADIENTS),
    TU_CODE(CLOPT_ERR_BAD_VALUE),
    TU_CODE(CLOPT_ERR_UNSUPPORTED),
    TU_CODE(CLOPT_ERR_CONTEXT_MISMATCH),
    TU_CODE(CLOPT_ERR_BAD_STATE),
    TU_CODE(CLOPT_ERR_JSON),
    TU_CODE(CLOPT_ERR_UNKNOWN_OPTIMIZER),
    TU_CODE(CLOPT_ERR_UNKNOWN_KEY),
    TU_CODE(CLOPT_ERR_BAD_TYPE),
    TU_CODE(CLOPT_ERR_UNKNOWN_SCHEDULE),
    TU_CODE(CLOPT_ERR_OUT_OF_MEMORY),
    TU_CODE(CLOPT_ERR_DEVICE_NOT_FOUND),
    TU_CODE(CLOPT_ERR_OPENCL),
    TU_CODE(CLOPT_ERR_BUILD_FAILED),
    TU_CODE(CLOPT_ERR_IO),
    TU_CODE(CLOPT_ERR_CORRUPT_FILE),
    TU_CODE(CLOPT_ERR_FILE_MISMATCH),
    TU_CODE(CLOPT_ERR_REPLICAS_DIVERGED),
    TU_CODE(CLOPT_ERR_REPLICAS_MISMATCH),
};
#define NCODES (sizeof all_codes / sizeof *all_codes)

Test(status, every_code_has_its_name_and_a_distinct_string) {
    for (size_t i = 0; i < NCODES; i++) {
        const char *name = clopt_status_name(all_codes[i].code);
        const char *text = clopt_status_string(all_codes[i].code);
        cr_assert(name && text, "NULL text for %s", all_codes[i].name);
        cr_assert_str_eq(name, all_codes[i].name);
        cr_assert(text[0] != '\0', "empty string for %s", all_codes[i].name);
        cr_assert_str_neq(text, "unknown status", "%s has no string", all_codes[i].name);
        for (size_t j = 0; j < i; j++)
            cr_assert_str_neq(text, clopt_status_string(all_codes[j].code),
                              "%s and %s share the string \"%s\"", all_codes[i].name,
                              all_codes[j].name, text);
    }
    cr_assert_str_eq(clopt_status_string(CLOPT_ERR_SHAPE_MISMATCH), "shape mismatch");
}

Test(status, unknown_codes) {
    const int unknown[] = {1, 42, -12, -19, -25, -39, -42, -59, -62, -83, -1000, 0x7fffffff};
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++) {
        cr_assert_str_eq(clopt_status_string((clopt_status)unknown[i]), "unknown status",
                         "code %d", unknown[i]);
        cr_assert_str_eq(clopt_status_name((clopt_status)unknown[i]), "CLOPT_ERR_UNKNOWN",
                         "code %d", unknown[i]);
    }
}

/* The numeric values are part of the ABI ("stable across releases") and grouped in bands. */
Test(status, values_are_stable_and_banded) {
    cr_assert_eq(CLOPT_OK, 0);
    cr_assert_eq(CLOPT_ERR_INVALID_ARGUMENT, -1);
    cr_assert_eq(CLOPT_ERR_BAD_STATE, -11);
    cr_assert_eq(CLOPT_ERR_JSON, -20);
    cr_assert_eq(CLOPT_ERR_UNKNOWN_SCHEDULE, -24);
    cr_assert_eq(CLOPT_ERR_OUT_OF_MEMORY, -40);
    cr_assert_eq(CLOPT_ERR_OPENCL, -60);
    cr_assert_eq(CLOPT_ERR_IO, -80);
    cr_assert_eq(CLOPT_ERR_FILE_MISMATCH, -82);
    cr_assert_eq(CLOPT_ERR_REPLICAS_DIVERGED, -100);
    cr_assert_eq(CLOPT_ERR_REPLICAS_MISMATCH, -101);
    for (size_t i = 1; i < NCODES; i++) cr_assert_lt(all_codes[i].code, 0, "%s", all_codes[i].name);
}

Test(version, macros_match_the_library) {
    cr_assert_eq(clopt_version_number(), (unsigned)CLOPT_VERSION_NUMBER);
    cr_assert_eq(CLOPT_VERSION_NUMBER,
                 CLOPT_VERSION_MAJOR * 10000 + CLOPT_VERSION_MINOR * 100 + CLOPT_VERSION_PATCH);
    cr_assert_str_eq(clopt_version_string(), CLOPT_VERSION_STRING);
    char buf[32];
    snprintf(buf, sizeof buf, "%d.%d.%d", CLOPT_VERSION_MAJOR, CLOPT_VERSION_MINOR,
             CLOPT_VERSION_PATCH);
    cr_assert_str_eq(clopt_version_string(), buf);
}

Test(dtype, sizes_names_and_parsing) {
    static const struct {
        clopt_dtype d;
        size_t size;
        const char *name;
    } t[] = {{CLOPT_FLOAT32, 4, "float32"},
             {CLOPT_FLOAT64, 8, "float64"},
             {CLOPT_FLOAT16, 2, "float16"},
             {CLOPT_BFLOAT16, 2, "bfloat16"}};
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(clopt_dtype_size(t[i].d), t[i].size);
        cr_assert_str_eq(clopt_dtype_name(t[i].d), t[i].name);
        clopt_dtype d = (clopt_dtype)99;
        cr_assert_eq(clopt_dtype_from_name(t[i].name, &d), CLOPT_OK);
        cr_assert_eq(d, t[i].d);
    }
    clopt_dtype d = CLOPT_FLOAT64;
    cr_assert_eq(clopt_dtype_size((clopt_dtype)4), 0);
    cr_assert_eq(clopt_dtype_size((clopt_dtype)-1), 0);
    cr_assert_null(clopt_dtype_name((clopt_dtype)4));
    cr_assert_eq(clopt_dtype_from_name("float8", &d), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_dtype_from_name("Float32", &d), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_dtype_from_name(NULL, &d), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(clopt_dtype_from_name("float32", NULL), CLOPT_ERR_INVALID_ARGUMENT);
    cr_assert_eq(d, CLOPT_FLOAT64, "out written on failure");
}

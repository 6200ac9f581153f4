/* test_signature.c - HMAC-SHA256 signatures, timestamps and verification. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "signature.h"

#define T_2026_01_20_NOON ((time_t)1768910400) /* 2026-01-20T12:00:00Z */

/* A callback body signed with "whsec_test_secret"; the expected hex was
 * computed independently with Python's hmac module. */
static const char known_body[] =
    "{\"tool_name\":\"run_query\",\"parameters\":{},\"execution_id\":\"exec_1\"}";
static const char known_sig[] = "sha256=b4caaf0959f1d5f3a5723130506894f39e2f0ffb948ea1cef5c2c0bc8c163510";
static const char known_secret[] = "whsec_test_secret";
static const char known_ts[] = "2026-01-20T12:00:00Z";

static void test_rfc4231_vectors(void **state)
{
	(void)state;
	unsigned char key20_0b[20], key20_aa[20], key131_aa[131], data50_dd[50];
	memset(key20_0b, 0x0b, sizeof key20_0b);
	memset(key20_aa, 0xaa, sizeof key20_aa);
	memset(key131_aa, 0xaa, sizeof key131_aa);
	memset(data50_dd, 0xdd, sizeof data50_dd);
	static const char data7[] = "This is a test using a larger than block-size key and a larger "
				    "than block-size data. The key needs to be hashed before being "
				    "used by the HMAC algorithm.";
	const struct {
		const char *name;
		const void *key;
		size_t key_len;
		const void *data;
		size_t data_len;
		const char *hex;
	} cases[] = {
	    {"case 1", key20_0b, sizeof key20_0b, "Hi There", 8,
	     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
	    {"case 2", "Jefe", 4, "what do ya want for nothing?", 28,
	     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
	    {"case 3", key20_aa, sizeof key20_aa, data50_dd, sizeof data50_dd,
	     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
	    {"case 6", key131_aa, sizeof key131_aa, "Test Using Larger Than Block-Size Key - Hash Key First",
	     54, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
	    {"case 7", key131_aa, sizeof key131_aa, data7, sizeof data7 - 1,
	     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char out[SIGNATURE_HEADER_LEN + 1];
		char want[SIGNATURE_HEADER_LEN + 1];
		memset(out, 'x', sizeof out);
		snprintf(want, sizeof want, "sha256=%s", cases[i].hex);
		print_message("RFC 4231 %s\n", cases[i].name);
		assert_int_equal(
		    signature_sign(cases[i].key, cases[i].key_len, cases[i].data, cases[i].data_len, out),
		    CN_OK);
		assert_string_equal(out, want);
	}
}

static void test_sign_empty_body(void **state)
{
	(void)state;
	char out[SIGNATURE_HEADER_LEN + 1];
	/* HMAC-SHA256(key "k", "") from Python's hmac module. */
	assert_int_equal(signature_sign("k", 1, NULL, 0, out), CN_OK);
	assert_string_equal(out, "sha256=8bb990c40a7d61cb97597a942125025be50ac8beb74436e3735b9889"
				 "3a7f6620");
	/* The same body signed twice gives the same text; a different key does not. */
	char again[SIGNATURE_HEADER_LEN + 1], other[SIGNATURE_HEADER_LEN + 1];
	assert_int_equal(signature_sign("k", 1, "", 0, again), CN_OK);
	assert_string_equal(out, again);
	assert_int_equal(signature_sign("K", 1, "", 0, other), CN_OK);
	assert_true(strcmp(out, other) != 0);
}

static int verify_at(const char *const *secrets, size_t n, const char *body, const char *sig, const char *ts,
		     time_t now, struct cn_error *err)
{
	memset(err, 0, sizeof *err);
	return signature_verify(secrets, n, body, body ? strlen(body) : 0, sig, ts, now, 300, err);
}

static void test_verify_known_body(void **state)
{
	(void)state;
	const char *secrets[] = {known_secret};
	struct cn_error err;
	assert_int_equal(verify_at(secrets, 1, known_body, known_sig, known_ts, T_2026_01_20_NOON, &err),
			 CN_OK);
	/* Our own signer agrees with the independent value. */
	char out[SIGNATURE_HEADER_LEN + 1];
	assert_int_equal(
	    signature_sign(known_secret, strlen(known_secret), known_body, strlen(known_body), out), CN_OK);
	assert_string_equal(out, known_sig);
}

static void test_verify_uppercase_hex_accepted(void **state)
{
	(void)state;
	const char *secrets[] = {known_secret};
	char upper[sizeof known_sig];
	memcpy(upper, known_sig, sizeof known_sig);
	for (char *p = upper + 7; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	struct cn_error err;
	assert_int_equal(verify_at(secrets, 1, known_body, upper, known_ts, T_2026_01_20_NOON, &err), CN_OK);
}

static void test_verify_wrong_secret_and_tampered_body(void **state)
{
	(void)state;
	struct cn_error err;
	const char *wrong[] = {"whsec_test_secreT"};
	assert_int_equal(verify_at(wrong, 1, known_body, known_sig, known_ts, T_2026_01_20_NOON, &err),
			 CN_EAUTH);
	assert_int_equal(err.code, CN_EAUTH);
	assert_string_equal(err.message, "signature does not match any configured callback secret");

	const char *secrets[] = {known_secret};
	size_t n = strlen(known_body);
	for (size_t i = 0; i < n; i++) {
		char tampered[sizeof known_body];
		memcpy(tampered, known_body, sizeof known_body);
		tampered[i] ^= 0x01;
		assert_int_equal(
		    verify_at(secrets, 1, tampered, known_sig, known_ts, T_2026_01_20_NOON, &err), CN_EAUTH);
	}
	/* A body one byte shorter or longer. */
	assert_int_equal(signature_verify(secrets, 1, known_body, n - 1, known_sig, known_ts,
					  T_2026_01_20_NOON, 300, &err),
			 CN_EAUTH);
	assert_int_equal(signature_verify(secrets, 1, known_body, n + 1, known_sig, known_ts,
					  T_2026_01_20_NOON, 300, &err),
			 CN_EAUTH);
}

static void test_verify_malformed_signatures(void **state)
{
	(void)state;
	const char *secrets[] = {known_secret};
	const char *hex = known_sig + 7;
	char buf[200];
	const char *malformed[8];
	char truncated[sizeof known_sig], nonhex[sizeof known_sig], longer[sizeof known_sig + 2];
	memcpy(truncated, known_sig, sizeof known_sig);
	truncated[sizeof known_sig - 2] = '\0';
	memcpy(nonhex, known_sig, sizeof known_sig);
	nonhex[20] = 'g';
	snprintf(longer, sizeof longer, "%s00", known_sig);
	snprintf(buf, sizeof buf, "sha1=%s", hex);
	malformed[0] = truncated;
	malformed[1] = nonhex;
	malformed[2] = longer;
	malformed[3] = hex; /* missing prefix */
	malformed[4] = buf; /* wrong algorithm */
	malformed[5] = "";
	malformed[6] = "sha256=";
	malformed[7] = "SHA256=b4caaf0959f1d5f3a5723130506894f39e2f0ffb948ea1cef5c2c0bc8c163510";
	for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
		struct cn_error err;
		print_message("malformed signature %zu: '%s'\n", i, malformed[i]);
		assert_int_equal(
		    verify_at(secrets, 1, known_body, malformed[i], known_ts, T_2026_01_20_NOON, &err),
		    CN_EAUTH);
		assert_string_equal(err.message, "malformed X-Interactor-Signature: expected "
						 "sha256=<64 lowercase hex>");
	}
	struct cn_error err;
	assert_int_equal(verify_at(secrets, 1, known_body, NULL, known_ts, T_2026_01_20_NOON, &err),
			 CN_EAUTH);
	assert_string_equal(err.message, "missing X-Interactor-Signature header");
}

static void test_verify_timestamp_tolerance(void **state)
{
	(void)state;
	const char *secrets[] = {known_secret};
	struct cn_error err;
	time_t t = T_2026_01_20_NOON;
	/* Exactly at the tolerance, in both directions, is accepted. */
	assert_int_equal(verify_at(secrets, 1, known_body, known_sig, known_ts, t + 300, &err), CN_OK);
	assert_int_equal(verify_at(secrets, 1, known_body, known_sig, known_ts, t - 300, &err), CN_OK);
	assert_int_equal(verify_at(secrets, 1, known_body, known_sig, known_ts, t + 301, &err), CN_EAUTH);
	assert_string_equal(err.message, "timestamp is 301 s old; the tolerance is 300 s");
	assert_int_equal(verify_at(secrets, 1, known_body, known_sig, known_ts, t - 301, &err), CN_EAUTH);
	assert_string_equal(err.message, "timestamp is 301 s in the future; the tolerance is 300 s");
	assert_int_equal(verify_at(secrets, 1, known_body, known_sig, known_ts, t + 412, &err), CN_EAUTH);
	assert_string_equal(err.message, "timestamp is 412 s old; the tolerance is 300 s");
	/* A stale timestamp is refused even with a bad signature: it is checked first,
	 * so no HMAC is computed for a replay. */
	assert_int_equal(verify_at(secrets, 1, known_body,
				   "sha256=0000000000000000000000000000000000000000000000000000000000000000",
				   known_ts, t + 1000, &err),
			 CN_EAUTH);
	assert_string_equal(err.message, "timestamp is 1000 s old; the tolerance is 300 s");
	/* Missing and malformed timestamps. */
	assert_int_equal(verify_at(secrets, 1, known_body, known_sig, NULL, t, &err), CN_EAUTH);
	assert_string_equal(err.message, "missing X-Interactor-Timestamp header");
	assert_int_equal(verify_at(secrets, 1, known_body, known_sig, "1768910400", t, &err), CN_EAUTH);
	assert_string_equal(err.message, "malformed X-Interactor-Timestamp: expected ISO 8601 such "
					 "as 2026-01-20T12:00:00Z");
	/* An offset timestamp naming the same instant is accepted. */
	assert_int_equal(verify_at(secrets, 1, known_body, known_sig, "2026-01-20T13:00:00+01:00", t, &err),
			 CN_OK);
}

static void test_verify_secret_rotation(void **state)
{
	(void)state;
	struct cn_error err;
	const char *rotated[] = {"whsec_new_secret", known_secret};
	assert_int_equal(verify_at(rotated, 2, known_body, known_sig, known_ts, T_2026_01_20_NOON, &err),
			 CN_OK);
	const char *first[] = {known_secret, "whsec_new_secret"};
	assert_int_equal(verify_at(first, 2, known_body, known_sig, known_ts, T_2026_01_20_NOON, &err),
			 CN_OK);
	const char *neither[] = {"a", "b", "c"};
	assert_int_equal(verify_at(neither, 3, known_body, known_sig, known_ts, T_2026_01_20_NOON, &err),
			 CN_EAUTH);
	assert_int_equal(verify_at(NULL, 0, known_body, known_sig, known_ts, T_2026_01_20_NOON, &err),
			 CN_EAUTH);
	assert_string_equal(err.message, "no callback secret is configured for this tool");
}

static void test_verify_empty_secret_never_matches(void **state)
{
	(void)state;
	char sig[SIGNATURE_HEADER_LEN + 1];
	assert_int_equal(signature_sign("", 0, known_body, strlen(known_body), sig), CN_OK);
	const char *secrets[] = {"", NULL};
	struct cn_error err;
	assert_int_equal(verify_at(secrets, 2, known_body, sig, known_ts, T_2026_01_20_NOON, &err), CN_EAUTH);
}

static void test_reasons_never_leak(void **state)
{
	(void)state;
	const char *secret = "whsec_do_not_print_me";
	const char *secrets[] = {secret};
	char expected[SIGNATURE_HEADER_LEN + 1];
	assert_int_equal(signature_sign(secret, strlen(secret), known_body, strlen(known_body), expected),
			 CN_OK);
	const struct {
		const char *sig;
		const char *ts;
		time_t now;
	} cases[] = {
	    {known_sig, known_ts, T_2026_01_20_NOON},
	    {known_sig, known_ts, T_2026_01_20_NOON + 5000},
	    {known_sig, known_ts, T_2026_01_20_NOON - 5000},
	    {known_sig, "garbage", T_2026_01_20_NOON},
	    {known_sig, NULL, T_2026_01_20_NOON},
	    {"sha256=zz", known_ts, T_2026_01_20_NOON},
	    {NULL, known_ts, T_2026_01_20_NOON},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct cn_error err;
		assert_int_equal(
		    verify_at(secrets, 1, known_body, cases[i].sig, cases[i].ts, cases[i].now, &err),
		    CN_EAUTH);
		assert_true(err.message[0] != '\0');
		assert_null(strstr(err.message, secret));
		assert_null(strstr(err.message, "do_not_print"));
		assert_null(strstr(err.message, expected + 7));
		/* Not even a prefix of the expected hex. */
		char prefix[9];
		memcpy(prefix, expected + 7, 8);
		prefix[8] = '\0';
		assert_null(strstr(err.message, prefix));
	}
}

static void test_parse_timestamp_valid(void **state)
{
	(void)state;
	const struct {
		const char *text;
		time_t want;
	} cases[] = {
	    {"2026-01-20T12:00:00Z", 1768910400},
	    {"2026-01-20T12:00:00.123Z", 1768910400},
	    {"2026-01-20T12:00:00.123456789Z", 1768910400},
	    {"2026-01-20T12:00:00.5+00:00", 1768910400},
	    {"2026-01-20T12:00:00-00:00", 1768910400},
	    {"2026-01-20T14:30:00+02:30", 1768910400},
	    {"2026-01-20T07:00:00-05:00", 1768910400},
	    {"2026-01-21T11:59:00+23:59", 1768910400},
	    {"2024-02-29T23:59:59Z", 1709251199},
	    {"2000-02-29T00:00:00Z", 951782400},
	    {"2000-01-01T00:00:00Z", 946684800},
	    {"1970-01-01T00:00:00Z", 0},
	    {"1969-12-31T23:59:59Z", -1},
	    {"9999-12-31T23:59:59Z", 253402300799},
	    {"2016-12-31T23:59:60Z", 1483228800}, /* leap second carried over */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		time_t t = 42;
		print_message("valid timestamp '%s'\n", cases[i].text);
		assert_int_equal(signature_parse_timestamp(cases[i].text, &t), CN_OK);
		assert_int_equal((long long)t, (long long)cases[i].want);
	}
}

static void test_parse_timestamp_malformed(void **state)
{
	(void)state;
	static const char *const bad[] = {
	    "",
	    "2026",
	    "2026-01-20",
	    "2026-01-20T12:00",
	    "2026-01-20T12:00:00",	/* no zone */
	    "2026-01-20 12:00:00Z",	/* space */
	    "2026-01-20t12:00:00Z",	/* lowercase t */
	    "2026-01-20T12:00:00z",	/* lowercase z */
	    " 2026-01-20T12:00:00Z",	/* leading space */
	    "2026-01-20T12:00:00Z ",	/* trailing space */
	    "2026-01-20T12:00:00Zjunk", /* trailing garbage */
	    "2026-01-20T12:00:00ZZ",
	    "2026-1-20T12:00:00Z", /* one-digit month */
	    "26-01-20T12:00:00Z",
	    "+2026-01-20T12:00:00Z",
	    "2026/01/20T12:00:00Z",
	    "2026-00-20T12:00:00Z", /* month 0 */
	    "2026-13-20T12:00:00Z", /* month 13 */
	    "2026-01-00T12:00:00Z", /* day 0 */
	    "2026-01-32T12:00:00Z",
	    "2026-04-31T12:00:00Z", /* April has 30 days */
	    "2026-02-29T12:00:00Z", /* 2026 is not a leap year */
	    "1900-02-29T12:00:00Z", /* century, not a leap year */
	    "2026-01-20T24:00:00Z", /* hour 24 */
	    "2026-01-20T12:60:00Z",
	    "2026-01-20T12:00:61Z",
	    "2026-01-20T12:00:00.Z",	       /* empty fraction */
	    "2026-01-20T12:00:00.1234567890Z", /* more than 9 digits */
	    "2026-01-20T12:00:00,5Z",	       /* comma fraction */
	    "2026-01-20T12:00:00+0100",	       /* offset without colon */
	    "2026-01-20T12:00:00+01",
	    "2026-01-20T12:00:00+24:00",
	    "2026-01-20T12:00:00+01:60",
	    "2026-01-20T12:00:00+01:00Z",
	    "2026-01-20T12:00:00UTC",
	    "2026-01-20T1a:00:00Z",
	    "2026-01-20T12:00:00\n",
	    "2026-0\x31-20T12:00:00Z\xff",
	    "-026-01-20T12:00:00Z",
	    "2026-01-20T-1:00:00Z",
	    "Tue, 20 Jan 2026 12:00:00 GMT",
	    "1768910400",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		time_t t = 42;
		print_message("malformed timestamp #%zu\n", i);
		assert_int_equal(signature_parse_timestamp(bad[i], &t), CN_EINVAL);
		assert_int_equal((long long)t, 42);
	}
	time_t t;
	assert_int_equal(signature_parse_timestamp(NULL, &t), CN_EINVAL);
}

static void test_format_timestamp(void **state)
{
	(void)state;
	const struct {
		time_t t;
		const char *want;
	} cases[] = {
	    {0, "1970-01-01T00:00:00Z"},
	    {1768910400, "2026-01-20T12:00:00Z"},
	    {1709251199, "2024-02-29T23:59:59Z"},
	    {253402300799, "9999-12-31T23:59:59Z"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char out[21];
		signature_format_timestamp(cases[i].t, out);
		assert_string_equal(out, cases[i].want);
		time_t back;
		assert_int_equal(signature_parse_timestamp(out, &back), CN_OK);
		assert_int_equal((long long)back, (long long)cases[i].t);
	}
	char out[21];
	signature_format_timestamp((time_t)253402300800, out); /* year 10000 */
	assert_int_equal(strlen(out), 20);
	assert_string_equal(out, "0000-00-00T00:00:00Z");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rfc4231_vectors),
	    cmocka_unit_test(test_sign_empty_body),
	    cmocka_unit_test(test_verify_known_body),
	    cmocka_unit_test(test_verify_uppercase_hex_accepted),
	    cmocka_unit_test(test_verify_wrong_secret_and_tampered_body),
	    cmocka_unit_test(test_verify_malformed_signatures),
	    cmocka_unit_test(test_verify_timestamp_tolerance),
	    cmocka_unit_test(test_verify_secret_rotation),
	    cmocka_unit_test(test_verify_empty_secret_never_matches),
	    cmocka_unit_test(test_reasons_never_leak),
	    cmocka_unit_test(test_parse_timestamp_valid),
	    cmocka_unit_test(test_parse_timestamp_malformed),
	    cmocka_unit_test(test_format_timestamp),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

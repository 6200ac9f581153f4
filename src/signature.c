/*
 * signature.c - HMAC-SHA256 callback signatures and ISO 8601 timestamps.
 *
 * Header format: "sha256=" followed by exactly 64 hex digits. The platform
 * sends lowercase; uppercase digits are accepted too, because the decoded
 * 32 bytes are what is compared, and the decode only looks at the attacker's
 * own input (its timing reveals nothing about a secret). The comparison of
 * the decoded bytes with every configured secret's HMAC is constant time
 * (CRYPTO_memcmp, no early exit).
 */
#include "signature.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define SIG_PREFIX "sha256="
#define SIG_PREFIX_LEN (sizeof SIG_PREFIX - 1)
#define MAC_LEN 32
#define SHA256_BLOCK 64

static const char hex_digits[] = "0123456789abcdef";

/* SHA-256, fetched once: HMAC() looks the algorithms up again at every call,
 * which under load costs more than hashing a request body. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static bool digest(EVP_MD_CTX *ctx, const void *a, size_t alen, const void *b, size_t blen,
		   unsigned char out[MAC_LEN])
{
	unsigned int n = 0;
	return EVP_DigestInit_ex2(ctx, sha256_md, NULL) && EVP_DigestUpdate(ctx, a, alen) &&
	       (blen == 0 || EVP_DigestUpdate(ctx, b, blen)) && EVP_DigestFinal_ex(ctx, out, &n) &&
	       n == MAC_LEN;
}

/* HMAC-SHA256 (RFC 2104) of body keyed with secret into mac[32]:
 * H((K ^ opad) || H((K ^ ipad) || body)), K the key (hashed when longer than
 * the 64-byte block) padded with zeros. */
static int hmac_sha256(const char *secret, size_t secret_len, const void *body, size_t len,
		       unsigned char mac[MAC_LEN])
{
	unsigned char key[SHA256_BLOCK] = {0}, pad[SHA256_BLOCK], inner[MAC_LEN];
	pthread_once(&sha256_once, sha256_fetch);
	EVP_MD_CTX *ctx = sha256_md ? EVP_MD_CTX_new() : NULL;
	if (!ctx)
		return CN_EINTERNAL;
	bool ok = true;
	if (secret_len > SHA256_BLOCK)
		ok = digest(ctx, secret, secret_len, NULL, 0, key);
	else if (secret_len)
		memcpy(key, secret, secret_len);
	for (size_t i = 0; i < SHA256_BLOCK; i++)
		pad[i] = key[i] ^ 0x36;
	ok = ok && digest(ctx, pad, sizeof pad, body, len, inner);
	for (size_t i = 0; i < SHA256_BLOCK; i++)
		pad[i] = key[i] ^ 0x5c;
	ok = ok && digest(ctx, pad, sizeof pad, inner, sizeof inner, mac);
	EVP_MD_CTX_free(ctx);
	OPENSSL_cleanse(key, sizeof key);
	OPENSSL_cleanse(pad, sizeof pad);
	OPENSSL_cleanse(inner, sizeof inner);
	return ok ? CN_OK : CN_EINTERNAL;
}

/* Value 0-15 of a hex digit (either case), or -1. */
static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* "sha256=<64 hex>" -> 32 bytes; false when malformed. */
static bool signature_decode(const char *header, unsigned char mac[MAC_LEN])
{
	if (strncmp(header, SIG_PREFIX, SIG_PREFIX_LEN) != 0)
		return false;
	const char *hex = header + SIG_PREFIX_LEN;
	for (size_t i = 0; i < MAC_LEN; i++) {
		int hi = hex_value(hex[2 * i]);
		int lo = hi < 0 ? -1 : hex_value(hex[2 * i + 1]);
		if (lo < 0)
			return false;
		mac[i] = (unsigned char)(hi << 4 | lo);
	}
	return hex[SIGNATURE_HEX_LEN] == '\0';
}

int signature_sign(const char *secret, size_t secret_len, const void *body, size_t len,
		   char out[SIGNATURE_HEADER_LEN + 1])
{
	unsigned char mac[MAC_LEN];
	int rc = hmac_sha256(secret, secret_len, body, len, mac);
	if (rc)
		return rc;
	memcpy(out, SIG_PREFIX, SIG_PREFIX_LEN);
	char *hex = out + SIG_PREFIX_LEN;
	for (size_t i = 0; i < MAC_LEN; i++) {
		hex[2 * i] = hex_digits[mac[i] >> 4];
		hex[2 * i + 1] = hex_digits[mac[i] & 15];
	}
	hex[SIGNATURE_HEX_LEN] = '\0';
	OPENSSL_cleanse(mac, sizeof mac);
	return CN_OK;
}

/* n decimal digits at s into *out; false unless all n are digits. */
static bool parse_digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

static bool is_leap_year(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int year, int month)
{
	static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	return month == 2 && is_leap_year(year) ? 29 : days[month - 1];
}

/* "YYYY-MM-DDTHH:MM:SS" into tm with every field range-checked. Second 60
 * (a leap second) is allowed as ISO 8601 does; timegm carries it over. */
static bool parse_date_time(const char *s, struct tm *tm)
{
	int year, mon, day, hour, min, sec;
	if (!parse_digits(s, 4, &year) || s[4] != '-' || !parse_digits(s + 5, 2, &mon) || s[7] != '-' ||
	    !parse_digits(s + 8, 2, &day) || s[10] != 'T' || !parse_digits(s + 11, 2, &hour) ||
	    s[13] != ':' || !parse_digits(s + 14, 2, &min) || s[16] != ':' || !parse_digits(s + 17, 2, &sec))
		return false;
	if (mon < 1 || mon > 12 || day < 1 || day > days_in_month(year, mon) || hour > 23 || min > 59 ||
	    sec > 60)
		return false;
	memset(tm, 0, sizeof *tm);
	tm->tm_year = year - 1900;
	tm->tm_mon = mon - 1;
	tm->tm_mday = day;
	tm->tm_hour = hour;
	tm->tm_min = min;
	tm->tm_sec = sec;
	return true;
}

/* The zone after the seconds (and fraction): "Z" or "+hh:mm" / "-hh:mm",
 * then the end of the string. *offset_s is the zone's offset east of UTC. */
static bool parse_zone(const char *s, long *offset_s)
{
	if (s[0] == 'Z' && s[1] == '\0') {
		*offset_s = 0;
		return true;
	}
	int hh, mm;
	if ((s[0] != '+' && s[0] != '-') || !parse_digits(s + 1, 2, &hh) || s[3] != ':' ||
	    !parse_digits(s + 4, 2, &mm) || s[6] != '\0' || hh > 23 || mm > 59)
		return false;
	*offset_s = (s[0] == '-' ? -1L : 1L) * (hh * 3600L + mm * 60L);
	return true;
}

int signature_parse_timestamp(const char *s, time_t *out)
{
	struct tm tm;
	long offset_s;
	if (!s || strnlen(s, 20) < 20 || !parse_date_time(s, &tm))
		return CN_EINVAL;
	const char *p = s + 19;
	if (*p == '.') {
		/* Fractions are allowed (up to nanoseconds) and ignored. */
		size_t n = 0;
		while (p[1 + n] >= '0' && p[1 + n] <= '9')
			n++;
		if (n == 0 || n > 9)
			return CN_EINVAL;
		p += 1 + n;
	}
	if (!parse_zone(p, &offset_s))
		return CN_EINVAL;
	errno = 0;
	time_t t = timegm(&tm);
	if (t == (time_t)-1 && errno == EOVERFLOW)
		return CN_EINVAL;
	*out = t - (time_t)offset_s;
	return CN_OK;
}

void signature_format_timestamp(time_t t, char out[21])
{
	struct tm tm;
	if (!gmtime_r(&t, &tm) || tm.tm_year < -1900 || tm.tm_year > 9999 - 1900) {
		/* Out of the four-digit-year range: say so rather than overflow. */
		memcpy(out, "0000-00-00T00:00:00Z", 21);
		return;
	}
	/* Every field is in range, so the text is exactly 20 characters. */
	snprintf(out, 21, "%04u-%02u-%02uT%02u:%02u:%02uZ", (unsigned)(tm.tm_year + 1900) % 10000u,
		 (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u,
		 (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u);
}

static int check_timestamp(const char *ts_header, time_t now, unsigned tolerance_s, struct cn_error *err)
{
	time_t ts;
	if (!ts_header)
		return cn_error_set(err, CN_EAUTH, "missing X-Interactor-Timestamp header");
	if (signature_parse_timestamp(ts_header, &ts) != CN_OK)
		return cn_error_set(err, CN_EAUTH,
				    "malformed X-Interactor-Timestamp: expected ISO 8601 such as "
				    "2026-01-20T12:00:00Z");
	/* Differences in long long: time_t subtraction cannot overflow for
	 * four-digit years. */
	long long age = (long long)now - (long long)ts;
	if (age > (long long)tolerance_s)
		return cn_error_set(err, CN_EAUTH, "timestamp is %lld s old; the tolerance is %u s", age,
				    tolerance_s);
	if (-age > (long long)tolerance_s)
		return cn_error_set(err, CN_EAUTH, "timestamp is %lld s in the future; the tolerance is %u s",
				    -age, tolerance_s);
	return CN_OK;
}

int signature_verify(const char *const *secrets, size_t nsecrets, const void *body, size_t len,
		     const char *sig_header, const char *ts_header, time_t now, unsigned tolerance_s,
		     struct cn_error *err)
{
	unsigned char given[MAC_LEN], expected[MAC_LEN];
	int rc = CN_OK;
	if (!sig_header)
		return cn_error_set(err, CN_EAUTH, "missing X-Interactor-Signature header");
	if (!signature_decode(sig_header, given))
		return cn_error_set(err, CN_EAUTH,
				    "malformed X-Interactor-Signature: expected sha256=<64 lowercase "
				    "hex>");
	rc = check_timestamp(ts_header, now, tolerance_s, err);
	if (rc)
		goto out;
	/* Try every secret, no early exit, so the time taken does not say
	 * which one matched. An empty secret never matches: anyone could sign. */
	unsigned matched = 0;
	for (size_t i = 0; i < nsecrets; i++) {
		const char *secret = secrets[i];
		size_t secret_len = secret ? strlen(secret) : 0;
		rc = hmac_sha256(secret, secret_len, body, len, expected);
		if (rc) {
			cn_error_set(err, rc, "cannot compute HMAC-SHA256 of the request body");
			goto out;
		}
		unsigned same = CRYPTO_memcmp(given, expected, MAC_LEN) == 0;
		matched |= same & (secret_len != 0);
	}
	if (nsecrets == 0)
		rc = cn_error_set(err, CN_EAUTH, "no callback secret is configured for this tool");
	else if (!matched)
		rc = cn_error_set(err, CN_EAUTH, "signature does not match any configured callback secret");
out:
	OPENSSL_cleanse(expected, sizeof expected);
	OPENSSL_cleanse(given, sizeof given);
	return rc;
}

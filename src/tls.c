/*
 * tls.c - see tls.h.
 */
#include "tls.h"

#include <errno.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEM_MAX (1024u * 1024u)

struct tls_keys {
	struct tls_keys *older; /* every pair made current, newest first */
	gnutls_pcert_st chain[TLS_MAX_CHAIN];
	unsigned nchain;
	gnutls_privkey_t key;
	int64_t not_after;
	char *cert_pem, *key_pem; /* to tell an unchanged pair */
	size_t cert_len, key_len;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct tls_keys *current; /* guarded by mu, like the list behind it */

/* The file's bytes, NUL-terminated; what names it in errors. */
static char *read_pem(const char *path, const char *what, size_t *len, struct cn_error *err)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		cn_error_set(err, CN_ECONFIG, "cannot read the TLS %s %s: %s", what, path, strerror(errno));
		return NULL;
	}
	char *data = malloc(PEM_MAX + 1);
	size_t n = data ? fread(data, 1, PEM_MAX + 1, f) : 0;
	bool failed = ferror(f);
	fclose(f);
	if (!data || failed || n > PEM_MAX) {
		cn_error_set(err, CN_ECONFIG, "the TLS %s %s %s", what, path,
			     !data ? "cannot be read: out of memory"
			     : failed ? "cannot be read" : "is over 1 MiB");
		free(data);
		return NULL;
	}
	data[n] = '\0';
	if (!strstr(data, "-----BEGIN ")) {
		cn_error_set(err, CN_ECONFIG, "the TLS %s %s is not PEM (no -----BEGIN line)", what, path);
		free(data);
		return NULL;
	}
	*len = n;
	return data;
}

void tls_keys_free(struct tls_keys *k)
{
	if (!k)
		return;
	for (unsigned i = 0; i < k->nchain; i++)
		gnutls_pcert_deinit(&k->chain[i]);
	gnutls_privkey_deinit(k->key);
	if (k->key_pem)
		memset(k->key_pem, 0, k->key_len);
	free(k->key_pem);
	free(k->cert_pem);
	free(k);
}

/* GnuTLS checks that the key belongs to the leaf certificate when both go
 * into one set of credentials; the set is thrown away after. */
static int check_pair(const gnutls_datum_t *cert, const gnutls_datum_t *key, const char *cert_path,
		      const char *key_path, struct cn_error *err)
{
	gnutls_certificate_credentials_t cred;
	if (gnutls_certificate_allocate_credentials(&cred) < 0)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	int rc = gnutls_certificate_set_x509_key_mem2(cred, cert, key, GNUTLS_X509_FMT_PEM, NULL, 0);
	gnutls_certificate_free_credentials(cred);
	if (rc < 0)
		return cn_error_set(err, CN_ECONFIG,
				    "the TLS certificate %s and key %s do not load together: %s (both "
				    "PEM, the key unencrypted and the certificate's own)",
				    cert_path, key_path, gnutls_strerror(rc));
	return CN_OK;
}

int tls_keys_load(const char *cert_path, const char *key_path, struct tls_keys **out,
		  struct cn_error *err)
{
	*out = NULL;
	struct tls_keys *k = calloc(1, sizeof *k);
	if (!k)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	int rc = CN_ECONFIG;
	if (!(k->cert_pem = read_pem(cert_path, "certificate", &k->cert_len, err)) ||
	    !(k->key_pem = read_pem(key_path, "key", &k->key_len, err)))
		goto fail;
	gnutls_datum_t cert = {(unsigned char *)k->cert_pem, (unsigned)k->cert_len};
	gnutls_datum_t key = {(unsigned char *)k->key_pem, (unsigned)k->key_len};
	if ((rc = check_pair(&cert, &key, cert_path, key_path, err)))
		goto fail;
	k->nchain = TLS_MAX_CHAIN;
	int g = gnutls_pcert_list_import_x509_raw(k->chain, &k->nchain, &cert, GNUTLS_X509_FMT_PEM, 0);
	if (g < 0) {
		k->nchain = 0;
		rc = cn_error_set(err, CN_ECONFIG, "the TLS certificate %s: %s%s", cert_path,
				  gnutls_strerror(g),
				  g == GNUTLS_E_SHORT_MEMORY_BUFFER ? " (more than 16 certificates)" : "");
		goto fail;
	}
	if (gnutls_privkey_init(&k->key) < 0 ||
	    (g = gnutls_privkey_import_x509_raw(k->key, &key, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
		rc = cn_error_set(err, CN_ECONFIG, "the TLS key %s: %s", key_path,
				  gnutls_strerror(g < 0 ? g : GNUTLS_E_MEMORY_ERROR));
		goto fail;
	}
	gnutls_x509_crt_t leaf;
	if (gnutls_pcert_export_x509(&k->chain[0], &leaf) >= 0) {
		k->not_after = (int64_t)gnutls_x509_crt_get_expiration_time(leaf);
		gnutls_x509_crt_deinit(leaf);
	}
	*out = k;
	return CN_OK;
fail:
	tls_keys_free(k);
	return rc;
}

int64_t tls_keys_not_after(const struct tls_keys *k)
{
	return k->not_after;
}

bool tls_keys_same_as_current(const struct tls_keys *k)
{
	pthread_mutex_lock(&mu);
	bool same = current && current->cert_len == k->cert_len && current->key_len == k->key_len &&
		    !memcmp(current->cert_pem, k->cert_pem, k->cert_len) &&
		    !memcmp(current->key_pem, k->key_pem, k->key_len);
	pthread_mutex_unlock(&mu);
	return same;
}

void tls_set_current(struct tls_keys *k)
{
	pthread_mutex_lock(&mu);
	k->older = current;
	current = k;
	pthread_mutex_unlock(&mu);
}

int64_t tls_current_not_after(void)
{
	pthread_mutex_lock(&mu);
	int64_t t = current ? current->not_after : 0;
	pthread_mutex_unlock(&mu);
	return t;
}

/* A new handshake: the current pair. On the server side GnuTLS passes no
 * CA names or algorithms to choose by. */
static int retrieve(gnutls_session_t session, const gnutls_datum_t *req_ca_dn, int nreqs,
		    const gnutls_pk_algorithm_t *algos, int nalgos, gnutls_pcert_st **chain,
		    unsigned int *nchain, gnutls_privkey_t *key)
{
	(void)session;
	(void)req_ca_dn;
	(void)nreqs;
	(void)algos;
	(void)nalgos;
	pthread_mutex_lock(&mu);
	struct tls_keys *k = current;
	pthread_mutex_unlock(&mu);
	if (!k)
		return -1;
	*chain = k->chain;
	*nchain = k->nchain;
	*key = k->key;
	return 0;
}

void *tls_cert_callback(void)
{
	static gnutls_certificate_retrieve_function2 *const fn = retrieve;
	return (void *)fn;
}

void tls_shutdown(void)
{
	pthread_mutex_lock(&mu);
	struct tls_keys *k = current;
	current = NULL;
	pthread_mutex_unlock(&mu);
	while (k) {
		struct tls_keys *older = k->older;
		tls_keys_free(k);
		k = older;
	}
}

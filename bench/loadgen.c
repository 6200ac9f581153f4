/*
 * loadgen.c - a closed-loop HTTP/1.1 load generator for interactor-connector.
 *
 * Each client thread keeps one keep-alive connection to 127.0.0.1 (or the
 * given host), sends one signed tool callback at a time and waits for the
 * whole answer before sending the next (so requests/s and latency describe
 * the server at that concurrency, not a queue in front of it). Every request
 * carries a fresh execution_id (exec_<run>_<thread>_<n>) so the connector runs
 * it instead of replaying a stored answer, a fresh timestamp (formatted once
 * per second per thread) and an HMAC-SHA256 signature of the exact body.
 *
 * --exec-id pins the execution_id instead (the replay path), --expect makes
 * another status the success (e.g. 401 with a wrong secret: the cost of a
 * rejection), --get PATH sends plain GETs (/healthz: the HTTP floor).
 *
 * Every latency sample of the measured window is kept; percentiles come
 * from the sorted samples. Statuses other than the expected one are counted
 * by status, transport failures (timeouts, resets, bad responses) separately.
 *
 * Output: one line "loadgen key=value ..." for scripts, then a human line.
 * Exit status: 0 when the run happened (whatever the statuses), 2 on bad
 * usage, 1 when it could not run at all (no connection, no secret).
 *
 * Build: bench/build.sh (cc -O2 loadgen.c -lcrypto -lpthread).
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_STATUS 600
#define MAX_RESPONSE (16u * 1024u * 1024u)
#define RAND_TOKEN "@RAND@"

enum transport_error {
	TE_CONNECT,
	TE_SEND,
	TE_TIMEOUT,
	TE_CLOSED,   /* the server closed the connection mid-answer */
	TE_PROTOCOL, /* unparsable status line or no Content-Length */
	TE_COUNT
};

static const char *const te_names[TE_COUNT] = {
	"connect", "send", "timeout", "closed", "protocol",
};

struct options {
	char host[256];
	char port[16];
	const char *tool;
	const char *params;
	const char *get_path; /* --get PATH: plain GETs (no body, no signature) */
	const char *secret;   /* from the environment; never printed */
	size_t secret_len;
	unsigned clients;
	double duration;
	long requests; /* > 0: stop after this many measured requests */
	double warmup;
	double timeout;
	double max_time; /* hard bound on the measured window in --requests mode */
	long rand_lo, rand_hi;
	bool has_rand;
	int pid; /* > 0: sample this process's CPU and memory around the window */
	int expect;          /* the status counted as success (200) */
	const char *exec_id; /* fixed execution_id: every request after the first is a replay */
	const char *label;
};

/* Growable array of latency samples in nanoseconds; owned by one thread. */
struct samples {
	uint64_t *v;
	size_t n, cap;
};

struct client {
	const struct options *opt;
	struct shared *sh;
	unsigned id;
	pthread_t thread;
	int fd;
	unsigned long served_on_fd; /* answers received on the current connection */
	bool connected_once;
	char *rbuf; /* response buffer, grows up to MAX_RESPONSE */
	size_t rcap, rlen;
	char *wbuf; /* request buffer */
	size_t wcap;
	char ts[32];
	time_t ts_second;
	uint64_t rng;
	unsigned long seq;
	/* results of the measured window */
	struct samples lat;
	unsigned long status[MAX_STATUS];
	unsigned long other_status;
	unsigned long terr[TE_COUNT];
	unsigned long warm_requests, warm_errors;
	unsigned long reconnects;
	uint64_t bytes_in;
	uint64_t last_done_ns;
};

struct shared {
	uint64_t warm_end_ns, end_ns;
	atomic_long remaining; /* --requests mode: measured requests still to claim */
	atomic_bool fatal;
	char run_id[32];
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die_usage(const char *msg)
{
	fprintf(stderr, "loadgen: %s (try --help)\n", msg);
	exit(2);
}

static const char usage[] =
	"usage: loadgen --url HOST:PORT (--tool NAME --params JSON | --get PATH) [options]\n"
	"\n"
	"  --url HOST:PORT     server address (keep it on 127.0.0.1)\n"
	"  --tool NAME         tool to call: POST /v1/tools/NAME\n"
	"  --params JSON       the callback's \"parameters\" object, inserted verbatim;\n"
	"                      every @RAND@ in it becomes a random integer (--rand);\n"
	"                      @FILE reads it from FILE\n"
	"  --rand LO:HI        range of @RAND@ (inclusive)\n"
	"  --get PATH          send plain GET PATH instead (e.g. /healthz: the HTTP floor)\n"
	"  --secret-env VAR    environment variable holding the callback secret\n"
	"                      (default INTERACTOR_CALLBACK_SECRET)\n"
	"  --clients N         client threads, one keep-alive connection each (default 1)\n"
	"  --duration S        measured seconds (default 10)\n"
	"  --requests N        measured requests in total instead of a duration\n"
	"  --max-time S        with --requests: stop after S seconds anyway (default 300)\n"
	"  --warmup S          seconds of unmeasured requests first (default 1)\n"
	"  --timeout S         per-request socket timeout (default 30)\n"
	"  --pid PID           report PID's CPU time per request and its RSS\n"
	"  --expect STATUS     the status that counts as success (default 200), e.g. 401\n"
	"                      with a wrong secret to measure the cost of a rejection\n"
	"  --exec-id ID        the same execution_id on every request: all but the first\n"
	"                      are replays of the stored answer (the replay path)\n"
	"  --label TEXT        copied into the key=value line (no spaces)\n";

static double parse_double(const char *s, const char *what, double lo, double hi)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || v < lo || v > hi) {
		fprintf(stderr, "loadgen: %s: '%s' is not a number from %g to %g\n", what, s, lo, hi);
		exit(2);
	}
	return v;
}

static long parse_long(const char *s, const char *what, long lo, long hi)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi) {
		fprintf(stderr, "loadgen: %s: '%s' is not a whole number from %ld to %ld\n", what, s,
			lo, hi);
		exit(2);
	}
	return v;
}

static void parse_url(struct options *o, const char *url)
{
	if (strncmp(url, "http://", 7) == 0)
		url += 7;
	const char *colon = strrchr(url, ':');
	if (!colon || colon == url || (size_t)(colon - url) >= sizeof o->host)
		die_usage("--url must be HOST:PORT");
	memcpy(o->host, url, (size_t)(colon - url));
	o->host[colon - url] = '\0';
	const char *port = colon + 1;
	size_t plen = strcspn(port, "/");
	if (plen == 0 || plen >= sizeof o->port)
		die_usage("--url must be HOST:PORT");
	memcpy(o->port, port, plen);
	o->port[plen] = '\0';
	parse_long(o->port, "--url port", 1, 65535);
}

static void parse_rand(struct options *o, const char *s)
{
	char lo[32], hi[32];
	const char *colon = strchr(s, ':');
	if (!colon || (size_t)(colon - s) >= sizeof lo || strlen(colon + 1) >= sizeof hi)
		die_usage("--rand must be LO:HI");
	memcpy(lo, s, (size_t)(colon - s));
	lo[colon - s] = '\0';
	strcpy(hi, colon + 1);
	o->rand_lo = parse_long(lo, "--rand LO", -1000000000L, 1000000000L);
	o->rand_hi = parse_long(hi, "--rand HI", o->rand_lo, 1000000000L);
	o->has_rand = true;
}

/* The whole of PATH, NUL-terminated, trailing newlines cut; exits on failure. */
static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "loadgen: cannot open %s: %s\n", path, strerror(errno));
		exit(2);
	}
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	size_t n;
	while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
		len += n;
		if (cap - len - 1 == 0) {
			cap *= 2;
			char *p = realloc(buf, cap);
			if (!p)
				free(buf);
			buf = p;
		}
	}
	fclose(f);
	if (!buf) {
		fputs("loadgen: out of memory\n", stderr);
		exit(1);
	}
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	buf[len] = '\0';
	return buf; /* lives until exit */
}

static void parse_options(struct options *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"url", required_argument, NULL, 'u'},
		{"tool", required_argument, NULL, 't'},
		{"params", required_argument, NULL, 'p'},
		{"rand", required_argument, NULL, 'R'},
		{"get", required_argument, NULL, 'g'},
		{"secret-env", required_argument, NULL, 's'},
		{"clients", required_argument, NULL, 'c'},
		{"duration", required_argument, NULL, 'd'},
		{"requests", required_argument, NULL, 'n'},
		{"max-time", required_argument, NULL, 'M'},
		{"warmup", required_argument, NULL, 'w'},
		{"timeout", required_argument, NULL, 'T'},
		{"pid", required_argument, NULL, 'P'},
		{"label", required_argument, NULL, 'L'},
		{"expect", required_argument, NULL, 'E'},
		{"exec-id", required_argument, NULL, 'X'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *secret_env = "INTERACTOR_CALLBACK_SECRET";
	bool have_url = false;
	int c;
	memset(o, 0, sizeof *o);
	o->clients = 1;
	o->duration = 10;
	o->warmup = 1;
	o->timeout = 30;
	o->max_time = 300;
	o->label = "";
	o->expect = 200;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'u': parse_url(o, optarg); have_url = true; break;
		case 't': o->tool = optarg; break;
		case 'p': o->params = optarg[0] == '@' ? read_file(optarg + 1) : optarg; break;
		case 'R': parse_rand(o, optarg); break;
		case 'g': o->get_path = optarg; break;
		case 's': secret_env = optarg; break;
		case 'c': o->clients = (unsigned)parse_long(optarg, "--clients", 1, 1024); break;
		case 'd': o->duration = parse_double(optarg, "--duration", 0.1, 3600); break;
		case 'n': o->requests = parse_long(optarg, "--requests", 1, 1000000000L); break;
		case 'M': o->max_time = parse_double(optarg, "--max-time", 0.1, 86400); break;
		case 'w': o->warmup = parse_double(optarg, "--warmup", 0, 3600); break;
		case 'T': o->timeout = parse_double(optarg, "--timeout", 0.01, 3600); break;
		case 'P': o->pid = (int)parse_long(optarg, "--pid", 1, 1L << 30); break;
		case 'L': o->label = optarg; break;
		case 'E': o->expect = (int)parse_long(optarg, "--expect", 100, 599); break;
		case 'X': o->exec_id = optarg; break;
		case 'h': fputs(usage, stdout); exit(0);
		default: exit(2);
		}
	}
	if (optind < argc)
		die_usage("unexpected argument");
	if (!have_url)
		die_usage("--url is required");
	if (o->get_path) {
		if (o->get_path[0] != '/')
			die_usage("--get PATH must start with /");
		return;
	}
	if (!o->tool || !o->params)
		die_usage("--tool and --params are required (or --get PATH)");
	if (strspn(o->tool, "abcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(o->tool))
		die_usage("--tool must be a plain tool name");
	if (o->exec_id && (strlen(o->exec_id) > 80 ||
			   strspn(o->exec_id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				  "0123456789_-.") != strlen(o->exec_id)))
		die_usage("--exec-id must be at most 80 letters, digits, '_', '-' or '.'");
	if (strstr(o->params, RAND_TOKEN) && !o->has_rand)
		die_usage("--params contains @RAND@ but --rand LO:HI is not given");
	o->secret = getenv(secret_env);
	if (!o->secret || !*o->secret) {
		fprintf(stderr, "loadgen: environment variable %s (the callback secret) is not set\n",
			secret_env);
		exit(1);
	}
	o->secret_len = strlen(o->secret);
}

/* ---- buffers ---------------------------------------------------------- */

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);
	if (!q) {
		fputs("loadgen: out of memory\n", stderr);
		exit(1);
	}
	return q;
}

static void samples_push(struct samples *s, uint64_t v)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 65536;
		s->v = xrealloc(s->v, s->cap * sizeof *s->v);
	}
	s->v[s->n++] = v;
}

/* Appends printf output to c->wbuf at *len, growing it as needed. */
static void wbuf_printf(struct client *c, size_t *len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void wbuf_printf(struct client *c, size_t *len, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(c->wbuf + *len, c->wcap - *len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			fputs("loadgen: formatting failed\n", stderr);
			exit(1);
		}
		if ((size_t)n < c->wcap - *len) {
			*len += (size_t)n;
			return;
		}
		c->wcap = c->wcap * 2 + (size_t)n;
		c->wbuf = xrealloc(c->wbuf, c->wcap);
	}
}

/* ---- request building ------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64* */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1DULL;
}

static const char *timestamp_now(struct client *c)
{
	time_t t = time(NULL);
	if (t != c->ts_second) {
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(c->ts, sizeof c->ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
		c->ts_second = t;
	}
	return c->ts;
}

/* Writes the parameters object into wbuf, replacing each @RAND@. */
static void append_params(struct client *c, size_t *len)
{
	const char *p = c->opt->params;
	const char *hit;
	while (c->opt->has_rand && (hit = strstr(p, RAND_TOKEN)) != NULL) {
		uint64_t span = (uint64_t)(c->opt->rand_hi - c->opt->rand_lo) + 1;
		long v = c->opt->rand_lo + (long)(rng_next(&c->rng) % span);
		wbuf_printf(c, len, "%.*s%ld", (int)(hit - p), p, v);
		p = hit + strlen(RAND_TOKEN);
	}
	wbuf_printf(c, len, "%s", p);
}

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

/*
 * Builds the whole request in c->wbuf and returns its length. The body is
 * formatted first, after a reserved head room, because the headers need its
 * length and signature; the headers are then formatted and the two slid
 * together to the start of the buffer.
 */
static size_t build_request(struct client *c)
{
	const struct options *o = c->opt;
	size_t len = 0;
	if (o->get_path) {
		wbuf_printf(c, &len, "GET %s HTTP/1.1\r\nHost: %s:%s\r\n\r\n", o->get_path, o->host,
			    o->port);
		return len;
	}
	char exec_id[96];
	if (o->exec_id)
		snprintf(exec_id, sizeof exec_id, "%s", o->exec_id);
	else
		snprintf(exec_id, sizeof exec_id, "exec_%s_%u_%lu", c->sh->run_id, c->id, c->seq++);
	const char *ts = timestamp_now(c);

	/* Reserve room for the headers, then write the body after them. */
	const size_t head_room = 1024 + strlen(o->host) + strlen(o->tool);
	if (c->wcap < head_room * 2) {
		c->wcap = head_room * 2 + 4096;
		c->wbuf = xrealloc(c->wbuf, c->wcap);
	}
	size_t blen = head_room;
	wbuf_printf(c, &blen, "{\"tool_name\":\"%s\",\"parameters\":", o->tool);
	append_params(c, &blen);
	wbuf_printf(c, &blen,
		    ",\"execution_id\":\"%s\",\"room_id\":\"room_bench\","
		    "\"assistant_id\":\"asst_bench\",\"timestamp\":\"%s\"}",
		    exec_id, ts);
	const char *body = c->wbuf + head_room;
	size_t body_len = blen - head_room;

	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;
	if (!HMAC(EVP_sha256(), o->secret, (int)o->secret_len, (const unsigned char *)body,
		  body_len, mac, &mac_len)) {
		fputs("loadgen: HMAC-SHA256 failed\n", stderr);
		exit(1);
	}
	char mac_hex[2 * EVP_MAX_MD_SIZE + 1];
	hex_encode(mac, mac_len, mac_hex);

	char head[1024 + 512];
	int hn = snprintf(head, sizeof head,
			  "POST /v1/tools/%s HTTP/1.1\r\n"
			  "Host: %s:%s\r\n"
			  "Content-Type: application/json\r\n"
			  "Content-Length: %zu\r\n"
			  "X-Interactor-Signature: sha256=%s\r\n"
			  "X-Interactor-Timestamp: %s\r\n"
			  "X-Interactor-Request-Id: %s\r\n"
			  "\r\n",
			  o->tool, o->host, o->port, body_len, mac_hex, ts, exec_id);
	if (hn < 0 || (size_t)hn > head_room) {
		fputs("loadgen: request headers too long\n", stderr);
		exit(1);
	}
	/* Slide the headers right in front of the body. */
	size_t start = head_room - (size_t)hn;
	memcpy(c->wbuf + start, head, (size_t)hn);
	memmove(c->wbuf, c->wbuf + start, (size_t)hn + body_len);
	return (size_t)hn + body_len;
}

/* ---- connection ------------------------------------------------------- */

static void conn_close(struct client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->rlen = 0;
	c->served_on_fd = 0;
}

static bool conn_open(struct client *c)
{
	const struct options *o = c->opt;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	if (getaddrinfo(o->host, o->port, &hints, &res) != 0)
		return false;
	int fd = -1;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return false;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct timeval tv = {
		.tv_sec = (time_t)o->timeout,
		.tv_usec = (suseconds_t)((o->timeout - (double)(time_t)o->timeout) * 1e6),
	};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	c->fd = fd;
	c->rlen = 0;
	c->served_on_fd = 0;
	return true;
}

static bool send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* Case-insensitive search for header NAME in the header block; returns its value. */
static const char *find_header(const char *head, size_t head_len, const char *name)
{
	size_t nlen = strlen(name);
	const char *p = memchr(head, '\n', head_len); /* skip the status line */
	const char *end = head + head_len;
	while (p && p + 1 < end) {
		p++;
		if ((size_t)(end - p) > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
			const char *v = p + nlen + 1;
			while (v < end && (*v == ' ' || *v == '\t'))
				v++;
			return v;
		}
		p = memchr(p, '\n', (size_t)(end - p));
	}
	return NULL;
}

enum read_result { RR_OK, RR_TIMEOUT, RR_CLOSED, RR_PROTOCOL };

struct response {
	int status;
	bool close_after;
	size_t total; /* bytes of head + body */
};

/* Parses the head in c->rbuf[0..head_len); fills r. */
static bool parse_head(struct client *c, size_t head_len, struct response *r)
{
	const char *b = c->rbuf;
	if (head_len < 12 || strncmp(b, "HTTP/1.", 7) != 0 || b[8] != ' ')
		return false;
	char code[4] = {b[9], b[10], b[11], '\0'};
	char *end;
	long status = strtol(code, &end, 10);
	if (*end || status < 100 || status > 599)
		return false;
	r->status = (int)status;
	const char *cl = find_header(b, head_len, "Content-Length");
	if (!cl)
		return false; /* the connector always sends it; chunked is not expected */
	errno = 0;
	unsigned long long n = strtoull(cl, &end, 10);
	if (errno || end == cl || n > MAX_RESPONSE)
		return false;
	const char *conn = find_header(b, head_len, "Connection");
	r->close_after = conn && strncasecmp(conn, "close", 5) == 0;
	if (b[7] == '0' && !(conn && strncasecmp(conn, "keep-alive", 10) == 0))
		r->close_after = true; /* HTTP/1.0 answer */
	r->total = head_len + (size_t)n;
	return true;
}

/* Reads one whole response (head and Content-Length body) into c->rbuf. */
static enum read_result read_response(struct client *c, struct response *r)
{
	size_t head_len = 0;
	r->total = 0;
	c->rlen = 0;
	for (;;) {
		if (r->total && c->rlen >= r->total)
			return RR_OK;
		if (c->rlen == c->rcap) {
			if (c->rcap >= MAX_RESPONSE)
				return RR_PROTOCOL;
			c->rcap = c->rcap ? c->rcap * 2 : 65536;
			c->rbuf = xrealloc(c->rbuf, c->rcap + 1);
		}
		ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return RR_TIMEOUT;
			return RR_CLOSED;
		}
		if (n == 0)
			return RR_CLOSED;
		c->rlen += (size_t)n;
		c->bytes_in += (uint64_t)n;
		if (!head_len) {
			c->rbuf[c->rlen] = '\0';
			char *eoh = strstr(c->rbuf, "\r\n\r\n");
			if (!eoh)
				continue;
			head_len = (size_t)(eoh - c->rbuf) + 4;
			if (!parse_head(c, head_len, r))
				return RR_PROTOCOL;
			if (r->total > c->rcap) {
				c->rcap = r->total;
				c->rbuf = xrealloc(c->rbuf, c->rcap + 1);
			}
		}
	}
}

/*
 * One request/answer exchange. Returns the HTTP status, or -1 - TE_x on a
 * transport failure. A connection the server closed while idle (nothing
 * read yet on a reused connection) is reopened and the request resent once.
 */
static int exchange(struct client *c, size_t req_len)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		if (c->fd < 0) {
			if (!conn_open(c))
				return -1 - TE_CONNECT;
			if (c->connected_once)
				c->reconnects++;
			c->connected_once = true;
		}
		bool reused = c->served_on_fd > 0;
		if (!send_all(c->fd, c->wbuf, req_len)) {
			conn_close(c);
			if (reused)
				continue;
			return -1 - TE_SEND;
		}
		struct response r;
		enum read_result rr = read_response(c, &r);
		if (rr == RR_OK) {
			c->served_on_fd++;
			if (r.close_after)
				conn_close(c);
			return r.status;
		}
		bool nothing_read = c->rlen == 0;
		conn_close(c);
		if (rr == RR_CLOSED && reused && nothing_read)
			continue;
		if (rr == RR_TIMEOUT)
			return -1 - TE_TIMEOUT;
		return rr == RR_PROTOCOL ? -1 - TE_PROTOCOL : -1 - TE_CLOSED;
	}
	return -1 - TE_CLOSED;
}

/* ---- client threads --------------------------------------------------- */

static void record(struct client *c, int status, uint64_t lat_ns)
{
	if (status < 0) {
		c->terr[-1 - status]++;
		return;
	}
	if (status < MAX_STATUS)
		c->status[status]++;
	else
		c->other_status++;
	samples_push(&c->lat, lat_ns);
}

static bool claim_measured(struct client *c)
{
	return atomic_fetch_sub(&c->sh->remaining, 1) > 0;
}

static void *client_main(void *arg)
{
	struct client *c = arg;
	struct shared *sh = c->sh;
	const struct options *o = c->opt;
	for (;;) {
		if (atomic_load(&sh->fatal))
			break;
		uint64_t t = now_ns();
		bool measured = t >= sh->warm_end_ns;
		if (t >= sh->end_ns)
			break;
		if (measured && o->requests && !claim_measured(c))
			break;
		size_t len = build_request(c);
		uint64_t t1 = now_ns();
		int status = exchange(c, len);
		uint64_t t2 = now_ns();
		if (status == -1 - TE_CONNECT && !c->connected_once) {
			atomic_store(&sh->fatal, true); /* nothing listens there */
			break;
		}
		if (!measured) {
			c->warm_requests++;
			if (status != o->expect)
				c->warm_errors++;
			continue;
		}
		record(c, status, t2 - t1);
		c->last_done_ns = t2;
	}
	conn_close(c);
	return NULL;
}

/* ---- the target process ----------------------------------------------- */

struct proc_sample {
	bool ok;
	double cpu_s; /* utime + stime */
	long rss_kb, hwm_kb;
};

static struct proc_sample proc_read(int pid)
{
	struct proc_sample s = {0};
	char path[64], buf[4096];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return s;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* Fields after the ")" of comm: state is field 3, utime 14, stime 15. */
	char *p = strrchr(buf, ')');
	if (!p)
		return s;
	unsigned long utime = 0, stime = 0;
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
		return s;
	s.cpu_s = (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
	snprintf(path, sizeof path, "/proc/%d/status", pid);
	f = fopen(path, "r");
	if (!f)
		return s;
	while (fgets(buf, sizeof buf, f)) {
		if (strncmp(buf, "VmRSS:", 6) == 0)
			s.rss_kb = strtol(buf + 6, NULL, 10);
		else if (strncmp(buf, "VmHWM:", 6) == 0)
			s.hwm_kb = strtol(buf + 6, NULL, 10);
	}
	fclose(f);
	s.ok = true;
	return s;
}

static void sleep_until(uint64_t t)
{
	for (uint64_t n = now_ns(); n < t; n = now_ns()) {
		uint64_t d = t - n;
		struct timespec ts = {(time_t)(d / 1000000000u), (long)(d % 1000000000u)};
		nanosleep(&ts, NULL);
	}
}

/* ---- report ------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

static double pct_us(const struct samples *s, double p)
{
	if (!s->n)
		return 0;
	size_t i = (size_t)(p / 100.0 * (double)(s->n - 1) + 0.5);
	if (i >= s->n)
		i = s->n - 1;
	return (double)s->v[i] / 1000.0;
}

static void report(const struct options *o, struct client *cl, const struct proc_sample *p0, const struct proc_sample *p1, uint64_t win_ns)
{
	struct samples all = {0};
	unsigned long status[MAX_STATUS] = {0}, other = 0, terr[TE_COUNT] = {0};
	unsigned long warm = 0, warm_err = 0, reconnects = 0;
	uint64_t bytes = 0;
	for (unsigned i = 0; i < o->clients; i++) {
		struct client *c = &cl[i];
		for (size_t k = 0; k < c->lat.n; k++)
			samples_push(&all, c->lat.v[k]);
		for (int k = 0; k < MAX_STATUS; k++)
			status[k] += c->status[k];
		for (int k = 0; k < TE_COUNT; k++)
			terr[k] += c->terr[k];
		other += c->other_status;
		warm += c->warm_requests;
		warm_err += c->warm_errors;
		reconnects += c->reconnects;
		bytes += c->bytes_in;
	}
	qsort(all.v, all.n, sizeof *all.v, cmp_u64);
	unsigned long terr_total = 0;
	for (int k = 0; k < TE_COUNT; k++)
		terr_total += terr[k];
	unsigned long answered = (unsigned long)all.n;
	unsigned long ok = status[o->expect];
	unsigned long errors = answered - ok + terr_total;
	double secs = (double)win_ns / 1e9;
	double rps = secs > 0 ? (double)answered / secs : 0;
	double mean = 0;
	for (size_t k = 0; k < all.n; k++)
		mean += (double)all.v[k];
	mean = all.n ? mean / (double)all.n / 1000.0 : 0;
	const char *what = o->get_path ? o->get_path : o->tool;

	printf("loadgen label=%s target=%s clients=%u expect=%d window_s=%.3f requests=%lu ok=%lu "
	       "errors=%lu "
	       "rps=%.1f mean_us=%.1f p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f "
	       "reconnects=%lu warmup_requests=%lu warmup_errors=%lu bytes_in=%llu",
	       *o->label ? o->label : "-", what, o->clients, o->expect, secs, answered + terr_total, ok, errors,
	       rps, mean, pct_us(&all, 50), pct_us(&all, 90), pct_us(&all, 99),
	       all.n ? (double)all.v[all.n - 1] / 1000.0 : 0.0, reconnects, warm, warm_err,
	       (unsigned long long)bytes);
	for (int k = 0; k < MAX_STATUS; k++)
		if (status[k] && k != o->expect)
			printf(" status_%d=%lu", k, status[k]);
	if (other)
		printf(" status_other=%lu", other);
	for (int k = 0; k < TE_COUNT; k++)
		if (terr[k])
			printf(" transport_%s=%lu", te_names[k], terr[k]);
	double cpu_us = -1;
	if (o->pid && p0->ok && p1->ok) {
		double cpu = p1->cpu_s - p0->cpu_s;
		cpu_us = answered ? cpu * 1e6 / (double)answered : 0;
		printf(" srv_cpu_s=%.2f srv_cpu_us_per_req=%.1f srv_cpu_util=%.2f srv_rss_kb=%ld "
		       "srv_hwm_kb=%ld",
		       cpu, cpu_us, secs > 0 ? cpu / secs : 0, p1->rss_kb, p1->hwm_kb);
	}
	printf("\n");

	printf("# %s, %u client(s), %.1f s: %.0f req/s, latency p50 %.2f ms, p90 %.2f ms, "
	       "p99 %.2f ms, max %.2f ms; %lu of %lu answered %d",
	       what, o->clients, secs, rps, pct_us(&all, 50) / 1000, pct_us(&all, 90) / 1000,
	       pct_us(&all, 99) / 1000, all.n ? (double)all.v[all.n - 1] / 1e6 : 0.0, ok,
	       answered + terr_total, o->expect);
	if (cpu_us >= 0)
		printf("; server CPU %.0f us/request, RSS %ld KiB (peak %ld)", cpu_us, p1->rss_kb,
		       p1->hwm_kb);
	printf("\n");
	free(all.v);
}

int main(int argc, char **argv)
{
	struct options o;
	parse_options(&o, argc, argv);
	signal(SIGPIPE, SIG_IGN);

	struct shared sh;
	memset(&sh, 0, sizeof sh);
	struct timespec rt;
	clock_gettime(CLOCK_REALTIME, &rt);
	snprintf(sh.run_id, sizeof sh.run_id, "%lx%x", (unsigned long)rt.tv_sec * 1000000000UL +
		 (unsigned long)rt.tv_nsec, (unsigned)getpid());
	sh.warm_end_ns = now_ns() + (uint64_t)(o.warmup * 1e9);
	double window = o.requests ? o.max_time : o.duration;
	sh.end_ns = sh.warm_end_ns + (uint64_t)(window * 1e9);
	atomic_init(&sh.remaining, o.requests);
	atomic_init(&sh.fatal, false);

	struct client *cl = calloc(o.clients, sizeof *cl);
	if (!cl) {
		fputs("loadgen: out of memory\n", stderr);
		return 1;
	}
	for (unsigned i = 0; i < o.clients; i++) {
		cl[i].opt = &o;
		cl[i].sh = &sh;
		cl[i].id = i;
		cl[i].fd = -1;
		cl[i].rng = ((uint64_t)rt.tv_nsec ^ ((uint64_t)i << 32)) | 1;
		cl[i].wcap = 8192;
		cl[i].wbuf = xrealloc(NULL, cl[i].wcap);
		if (pthread_create(&cl[i].thread, NULL, client_main, &cl[i]) != 0) {
			fputs("loadgen: cannot start a client thread\n", stderr);
			return 1;
		}
	}
	struct proc_sample p0 = {0}, p1 = {0};
	sleep_until(sh.warm_end_ns);
	if (o.pid)
		p0 = proc_read(o.pid);
	uint64_t measured_from = now_ns();
	for (unsigned i = 0; i < o.clients; i++)
		pthread_join(cl[i].thread, NULL);
	uint64_t measured_to = now_ns();
	if (o.pid)
		p1 = proc_read(o.pid);
	if (atomic_load(&sh.fatal)) {
		fprintf(stderr, "loadgen: cannot connect to %s:%s\n", o.host, o.port);
		return 1;
	}
	if (o.pid && (!p0.ok || !p1.ok))
		fprintf(stderr, "loadgen: could not read /proc/%d (did it exit?)\n", o.pid);
	uint64_t last = measured_from;
	for (unsigned i = 0; i < o.clients; i++)
		if (cl[i].last_done_ns > last)
			last = cl[i].last_done_ns;
	if (last > measured_to)
		last = measured_to;
	report(&o, cl, &p0, &p1, last - measured_from);
	for (unsigned i = 0; i < o.clients; i++) {
		free(cl[i].lat.v);
		free(cl[i].rbuf);
		free(cl[i].wbuf);
	}
	free(cl);
	return 0;
}

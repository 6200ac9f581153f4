#include "yaml_tree.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

void ytree_free(struct ynode *node)
{
	if (!node)
		return;
	for (size_t i = 0; i < node->n; i++) {
		ytree_free(node->items[i]);
		if (node->keys)
			ytree_free(node->keys[i]);
	}
	free(node->items);
	free(node->keys);
	free(node->value);
	free(node);
}

struct builder {
	yaml_parser_t parser;
	const char *name;
	struct cn_error *err;
};

static int parse_error(struct builder *b, int line, int col, const char *what)
{
	return cn_error_set(b->err, CN_ECONFIG, "%s:%d:%d: %s", b->name, line, col, what);
}

static struct ynode *node_new(enum ynode_type type, const yaml_event_t *ev)
{
	struct ynode *n = calloc(1, sizeof *n);
	if (!n)
		return NULL;
	n->type = type;
	n->line = (int)ev->start_mark.line + 1;
	n->column = (int)ev->start_mark.column + 1;
	return n;
}

static int node_push(struct ynode *parent, struct ynode *key, struct ynode *child)
{
	struct ynode **items = realloc(parent->items, (parent->n + 1) * sizeof *items);
	if (!items)
		return CN_ENOMEM;
	parent->items = items;
	if (parent->type == YNODE_MAP) {
		struct ynode **keys = realloc(parent->keys, (parent->n + 1) * sizeof *keys);
		if (!keys)
			return CN_ENOMEM;
		parent->keys = keys;
		parent->keys[parent->n] = key;
	}
	parent->items[parent->n++] = child;
	return CN_OK;
}

static int next_event(struct builder *b, yaml_event_t *ev)
{
	if (!yaml_parser_parse(&b->parser, ev)) {
		const yaml_mark_t *m = b->parser.problem ? &b->parser.problem_mark : &b->parser.mark;
		char what[300];
		snprintf(what, sizeof what, "%s%s%s", b->parser.problem ? b->parser.problem : "syntax error",
			 b->parser.context ? " " : "", b->parser.context ? b->parser.context : "");
		return parse_error(b, (int)m->line + 1, (int)m->column + 1, what);
	}
	return CN_OK;
}

/* Build the node that starts with ev (already read). */
static int build_node(struct builder *b, yaml_event_t *ev, int depth, struct ynode **out);

static int build_children(struct builder *b, struct ynode *parent, int depth)
{
	for (;;) {
		yaml_event_t ev;
		int rc = next_event(b, &ev);
		if (rc)
			return rc;
		if (ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&ev);
			return CN_OK;
		}
		struct ynode *key = NULL, *value = NULL;
		rc = build_node(b, &ev, depth + 1, parent->type == YNODE_MAP ? &key : &value);
		yaml_event_delete(&ev);
		if (rc)
			return rc;
		if (parent->type == YNODE_MAP) {
			if (key->type != YNODE_SCALAR) {
				rc = parse_error(b, key->line, key->column, "a map key must be a plain value");
				ytree_free(key);
				return rc;
			}
			for (size_t i = 0; i < parent->n; i++) {
				if (strcmp(parent->keys[i]->value, key->value) == 0) {
					char what[200];
					snprintf(what, sizeof what, "duplicate key '%.100s'", key->value);
					rc = parse_error(b, key->line, key->column, what);
					ytree_free(key);
					return rc;
				}
			}
			rc = next_event(b, &ev);
			if (rc == 0) {
				rc = build_node(b, &ev, depth + 1, &value);
				yaml_event_delete(&ev);
			}
			if (rc) {
				ytree_free(key);
				return rc;
			}
		}
		rc = node_push(parent, key, value);
		if (rc) {
			ytree_free(key);
			ytree_free(value);
			return rc;
		}
	}
}

static int build_node(struct builder *b, yaml_event_t *ev, int depth, struct ynode **out)
{
	int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
	struct ynode *n;
	int rc;

	if (depth > YTREE_MAX_DEPTH)
		return parse_error(b, line, col, "nesting is too deep");
	switch (ev->type) {
	case YAML_ALIAS_EVENT:
		return parse_error(b, line, col, "aliases (*name) are not supported");
	case YAML_SCALAR_EVENT:
		if (ev->data.scalar.anchor)
			return parse_error(b, line, col, "anchors (&name) are not supported");
		n = node_new(YNODE_SCALAR, ev);
		if (!n)
			return CN_ENOMEM;
		n->len = ev->data.scalar.length;
		n->value = malloc(n->len + 1);
		if (!n->value) {
			free(n);
			return CN_ENOMEM;
		}
		memcpy(n->value, ev->data.scalar.value, n->len);
		n->value[n->len] = '\0';
		n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
		*out = n;
		return CN_OK;
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
		if ((ev->type == YAML_SEQUENCE_START_EVENT ? ev->data.sequence_start.anchor
							   : ev->data.mapping_start.anchor))
			return parse_error(b, line, col, "anchors (&name) are not supported");
		n = node_new(ev->type == YAML_SEQUENCE_START_EVENT ? YNODE_SEQ : YNODE_MAP, ev);
		if (!n)
			return CN_ENOMEM;
		rc = build_children(b, n, depth);
		if (rc) {
			ytree_free(n);
			return rc;
		}
		*out = n;
		return CN_OK;
	default:
		return parse_error(b, line, col, "unexpected YAML event");
	}
}

int ytree_parse_buffer(const char *name, const void *data, size_t len, struct ynode **root,
		       struct cn_error *err)
{
	struct builder b = {.name = name, .err = err};
	yaml_event_t ev;
	struct ynode *doc = NULL;
	int rc;

	*root = NULL;
	if (len > YTREE_MAX_FILE)
		return cn_error_set(err, CN_ECONFIG, "%s: file is larger than %u bytes", name, YTREE_MAX_FILE);
	if (!yaml_parser_initialize(&b.parser))
		return cn_error_set(err, CN_ENOMEM, "%s: out of memory", name);
	yaml_parser_set_input_string(&b.parser, data, len);

	/* STREAM-START, then DOCUMENT-START or STREAM-END */
	for (;;) {
		rc = next_event(&b, &ev);
		if (rc)
			goto out;
		yaml_event_type_t t = ev.type;
		if (t == YAML_STREAM_START_EVENT || t == YAML_DOCUMENT_START_EVENT) {
			yaml_event_delete(&ev);
			continue;
		}
		if (t == YAML_STREAM_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		if (t == YAML_DOCUMENT_END_EVENT) {
			yaml_event_delete(&ev);
			/* a second document is refused */
			rc = next_event(&b, &ev);
			if (rc)
				goto out;
			t = ev.type;
			int line = (int)ev.start_mark.line + 1, col = (int)ev.start_mark.column + 1;
			yaml_event_delete(&ev);
			if (t != YAML_STREAM_END_EVENT) {
				rc = parse_error(&b, line, col, "only one YAML document is allowed");
				goto out;
			}
			break;
		}
		rc = build_node(&b, &ev, 0, &doc);
		yaml_event_delete(&ev);
		if (rc)
			goto out;
	}
	if (!doc) {
		doc = calloc(1, sizeof *doc);
		if (!doc) {
			rc = CN_ENOMEM;
			goto out;
		}
		doc->type = YNODE_MAP;
		doc->line = doc->column = 1;
	}
	*root = doc;
	doc = NULL;
	rc = CN_OK;
out:
	ytree_free(doc);
	yaml_parser_delete(&b.parser);
	if (rc == CN_ENOMEM)
		cn_error_set(err, rc, "%s: out of memory", name);
	return rc;
}

int ytree_parse_file(const char *path, struct ynode **root, struct cn_error *err)
{
	*root = NULL;
	FILE *f = fopen(path, "rb");
	if (!f)
		return cn_error_set(err, CN_EIO, "%s: cannot open: %s", path, strerror(errno));
	char *data = NULL;
	size_t len = 0, cap = 0;
	int rc = CN_OK;
	for (;;) {
		if (len == cap) {
			if (cap >= YTREE_MAX_FILE + 1) {
				break;
			}
			cap = cap ? cap * 2 : 4096;
			char *p = realloc(data, cap);
			if (!p) {
				rc = cn_error_set(err, CN_ENOMEM, "%s: out of memory", path);
				goto out;
			}
			data = p;
		}
		size_t n = fread(data + len, 1, cap - len, f);
		len += n;
		if (n == 0) {
			if (ferror(f))
				rc = cn_error_set(err, CN_EIO, "%s: read error", path);
			break;
		}
	}
	if (rc == CN_OK)
		rc = ytree_parse_buffer(path, data ? data : "", len, root, err);
out:
	free(data);
	fclose(f);
	return rc;
}

const struct ynode *ytree_get(const struct ynode *map, const char *key)
{
	if (!map || map->type != YNODE_MAP)
		return NULL;
	for (size_t i = 0; i < map->n; i++)
		if (strcmp(map->keys[i]->value, key) == 0)
			return map->items[i];
	return NULL;
}

bool ytree_is_null(const struct ynode *node)
{
	if (!node || node->type != YNODE_SCALAR || !node->plain)
		return false;
	return node->len == 0 || strcmp(node->value, "null") == 0 || strcmp(node->value, "~") == 0 ||
	       strcmp(node->value, "Null") == 0 || strcmp(node->value, "NULL") == 0;
}

const char *ytree_type_name(const struct ynode *node)
{
	switch (node->type) {
	case YNODE_SCALAR: return "a value";
	case YNODE_SEQ: return "a list";
	case YNODE_MAP: return "a map";
	}
	return "?";
}

/*
 * yaml_tree.h - a YAML (or JSON) document as a small tree with line numbers,
 * built with libyaml. Anchors and aliases are refused (no billion laughs),
 * nesting is bounded, and one document is read. Config and mapping files use
 * it so that every error can name file, line and key.
 */
#ifndef CN_YAML_TREE_H
#define CN_YAML_TREE_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

#define YTREE_MAX_DEPTH 64
#define YTREE_MAX_FILE (4u << 20)

enum ynode_type { YNODE_SCALAR, YNODE_SEQ, YNODE_MAP };

struct ynode {
	enum ynode_type type;
	int line;   /* 1-based */
	int column; /* 1-based */
	/* scalar */
	char *value; /* NUL-terminated; may contain NUL bytes before len */
	size_t len;
	bool plain; /* unquoted scalar: `null`, `~` and `` mean null, true/false are bools */
	/* sequence: items[i]; mapping: keys[i] -> items[i] (keys are scalars) */
	struct ynode **items;
	struct ynode **keys;
	size_t n;
};

/* Parse a file. On error returns CN_ECONFIG (or CN_EIO, CN_ENOMEM) with
 * "FILE:LINE:COL: what" in err. *root owned by the caller (ytree_free). */
int ytree_parse_file(const char *path, struct ynode **root, struct cn_error *err) CN_MUST_USE;
/* Same from memory; name is used in messages. An empty document gives an empty map. */
int ytree_parse_buffer(const char *name, const void *data, size_t len, struct ynode **root,
		       struct cn_error *err) CN_MUST_USE;
void ytree_free(struct ynode *node);

/* Value of key in a map node, or NULL (also when node is not a map). */
const struct ynode *ytree_get(const struct ynode *map, const char *key);
/* True for a plain scalar null (`null`, `~`, empty). */
bool ytree_is_null(const struct ynode *node);
/* "scalar", "list", "map" */
const char *ytree_type_name(const struct ynode *node);

#endif

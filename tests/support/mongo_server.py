#!/usr/bin/python3
"""mongo_server.py - a MongoDB wire-protocol TEST server for interactor-connector's tests.

What it is: one asyncio process that speaks enough of the MongoDB wire protocol for libmongoc
1.23 (mongoc_client_pool_t) and pymongo to use it as a standalone server, over Debian's
python3-mongomock (queries, updates, aggregation) and bson (from python3-pymongo). It exists
because no mongod can be installed on the build machines. It is NOT a database: everything is
in memory, there is no authentication, no TLS, no compression, no sessions or transactions (lsid,
txnNumber and the like are accepted and ignored), no replication, no JavaScript ($where,
$function answer errors). Sort order, Decimal128 and collation are mongomock's approximations:
collation is ignored (noted in the log); Decimal128 is patched here to compare, sort, add,
multiply, average and round as a number, but other expression operators may not accept it.
A client that authenticates (a user in the URI) fails: saslStart is not a command here.

Run it with /usr/bin/python3 (Debian's modules); tests/support/mongo.sh starts and stops it:
    mongo_server.py --port PORT [--host 127.0.0.1] [--fixtures DIR] [--db connector_test]
                    [--roles read] [--user connector_test_user] [--pid-file F] [--log F]
    mongo_server.py --ping PORT      exit 0 when a server on 127.0.0.1:PORT answers ping

Fixtures (--fixtures DIR, loaded at every start into --db): DIR/<coll>.json is a JSON array of
documents in Extended JSON v2; optional DIR/<coll>.meta.json = {"indexes": [{"key", "name",
"unique"...}], "validator": {...}}; optional DIR/views.json = [{"name", "viewOn", "pipeline"}].

Protocol: handshake over legacy OP_QUERY (any command on <db>.$cmd works there, answered with
OP_REPLY), everything else over OP_MSG (checksum trailer verified and stripped, moreToCome = no
reply, kind-1 document sequences merged into the body). maxWireVersion 17 (MongoDB 6.0;
libmongoc 1.23 refuses below 6; --max-wire-version), no topologyVersion, so pooled clients poll
with hello over OP_QUERY. Frames with a bad length are logged and the
connection closed; bad contents get an error reply. A blocked command never blocks another
connection.

Commands: hello/isMaster, ping, buildInfo (7.0.0-test), serverStatus, connectionStatus
(showPrivileges), endSessions, listDatabases, listCollections, listIndexes, dbStats, collStats,
find, aggregate, count, distinct, getMore, killCursors, explain; writes really applied: insert,
update, delete, findAndModify, create (validator; views with viewOn/pipeline), drop,
dropDatabase, createIndexes, dropIndexes, renameCollection (admin), aggregate $out and $merge
(whenMatched replace/keepExisting/merge/fail, whenNotMatched insert/discard/fail). Stages are
mongomock's plus $lookup (also pipeline/let, views), $unionWith, $facet, $unset, $replaceWith,
$sortByCount, $bucketAuto, $documents done here; $setWindowFields, $densify, $fill, $redact,
$geoNear, $search and admin stages answer 238.
Views are listed (and <db>.system.views is readable) as on a real server; reading a view runs
its pipeline on its source first.
Validators: $jsonSchema (common keywords) and query-style, checked on insert/update.
Cursor ids are random int64 above 2^40; first batches default to 101 documents; every batch
stops at 16 MiB; exhausted cursors are closed; idle cursors time out (--cursor-timeout-ms).
maxTimeMS is checked after each read and bounds a fail point's block. Unknown commands answer
59 CommandNotFound, unsupported options or stages 238 NotImplemented.

Fail point (like mongod's, admin db):
    {configureFailPoint: "failCommand", mode: "alwaysOn" | "off" | {times: n} | {skip: n},
     data: {failCommands: ["find", ...], blockConnection: true, blockTimeMS: ms,
            closeConnection: true, errorCode: n, errorLabels: [...], writeConcernError: {...},
            appName: "only clients with this appname"}}
  A blocked command with a maxTimeMS shorter than blockTimeMS answers 50 MaxTimeMSExpired when
  its maxTimeMS has elapsed. configureFailPoint itself is never failed.

TEST-ONLY command (no real server has it), admin db:
    {cnTestSetRoles: ["read" | "readWrite" | "dbAdmin" | "dbOwner" | "root" | "readAnyDatabase"
                      | "role@db" | {role, db}, ...]}
  sets the roles that later connectionStatus calls report for the (pretend) authenticated user;
  [] reports no authenticated user. --roles (comma-separated, default "read") sets them at start.

Log (stderr or --log): one line per command received, "conn=N OP_MSG cmd=NAME db=DB
coll=COLL" (aggregate and explain add "stages=$match,$out"; never documents or filters), one
"error cmd=NAME code=N" line per error reply and "writeErrors cmd=NAME codes=..." per refused
write, WARNING lines only for malformed input and for exceptions that are server bugs.
"""

import argparse
import asyncio
import datetime
import decimal
import itertools
import json
import logging
import math
import operator
import os
import random
import re
import signal
import socket
import struct
import sys
import time
import traceback
import uuid

import bson
from bson import json_util
from bson.binary import Binary, UuidRepresentation
from bson.codec_options import CodecOptions
from bson.decimal128 import Decimal128, create_decimal128_context
from bson.int64 import Int64
from bson.max_key import MaxKey
from bson.min_key import MinKey
from bson.objectid import ObjectId
from bson.raw_bson import RawBSONDocument
from bson.regex import Regex
from bson.timestamp import Timestamp

OP_REPLY = 1
OP_QUERY = 2004
OP_COMPRESSED = 2012
OP_MSG = 2013
LEGACY_OPS = {2001: 'OP_UPDATE', 2002: 'OP_INSERT', 2005: 'OP_GET_MORE', 2006: 'OP_DELETE',
              2007: 'OP_KILL_CURSORS', 2010: 'OP_COMMAND', 2011: 'OP_COMMANDREPLY',
              OP_COMPRESSED: 'OP_COMPRESSED'}

MAX_BSON_SIZE = 16 * 1024 * 1024
MAX_MESSAGE_SIZE = 48000000
MAX_WRITE_BATCH = 100000
DEFAULT_FIRST_BATCH = 101
VERSION = '7.0.0-test'

DECODE_OPTS = CodecOptions(document_class=dict, tz_aware=False,
                           uuid_representation=UuidRepresentation.UNSPECIFIED)
JSON_OPTS = json_util.JSONOptions(tz_aware=False,
                                  uuid_representation=UuidRepresentation.UNSPECIFIED)

CODE_NAMES = {
    1: 'InternalError', 2: 'BadValue', 4: 'NoSuchKey', 9: 'FailedToParse', 13: 'Unauthorized',
    14: 'TypeMismatch', 20: 'IllegalOperation', 22: 'InvalidBSON', 26: 'NamespaceNotFound',
    27: 'IndexNotFound', 40: 'ConflictingUpdateOperators', 43: 'CursorNotFound',
    48: 'NamespaceExists', 50: 'MaxTimeMSExpired', 52: 'DollarPrefixedFieldName',
    59: 'CommandNotFound', 66: 'ImmutableField', 67: 'CannotCreateIndex', 72: 'InvalidOptions',
    73: 'InvalidNamespace', 85: 'IndexOptionsConflict', 86: 'IndexKeySpecsConflict',
    91: 'ShutdownInProgress', 96: 'OperationFailed', 115: 'CommandNotSupported',
    121: 'DocumentValidationFailure', 166: 'CommandNotSupportedOnView',
    186: 'ClientMetadataCannotBeMutated',
    223: 'IllegalOpMsgFlag', 238: 'NotImplemented', 352: 'UnsupportedOpQueryCommand',
    10334: 'BSONObjectTooLarge', 11000: 'DuplicateKey', 11601: 'Interrupted',
}

log = logging.getLogger('mongo_server')


class CommandError(Exception):
    """An error reply {ok: 0, errmsg, code, codeName}."""

    def __init__(self, code, msg, **extra):
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.extra = extra

    def reply(self):
        doc = {'ok': 0.0, 'errmsg': self.msg, 'code': self.code,
               'codeName': code_name(self.code)}
        doc.update(self.extra)
        return doc


class CloseConnection(Exception):
    """Close this connection without a reply."""


def code_name(code):
    return CODE_NAMES.get(code, 'Location%d' % code)


def clean(v):
    """A name for the log: control characters and spaces escaped, so that no client string
    can forge a log line or a field."""
    v = str(v)
    if v.isprintable() and ' ' not in v and len(v) <= 200:
        return v
    return repr(v[:200])


def oneline(msg):
    msg = str(msg)
    return msg if msg.isprintable() else repr(msg)


def now_utc():
    return datetime.datetime.utcnow()


# ---------------------------------------------------------------------------------------------
# mongomock adjustments: numeric Decimal128 (comparison, arithmetic, $avg), $round,
# MinKey/MaxKey/Timestamp ordering.

def _patch_mongomock(filtering, aggregate):
    orig_type = filtering._get_compare_type
    orig_compare = filtering.bson_compare

    def compare_type(val):
        if isinstance(val, Decimal128):
            return 10
        if isinstance(val, MinKey):
            return -1
        if isinstance(val, MaxKey):
            return 127
        if isinstance(val, Timestamp):
            return 47
        if isinstance(val, Regex):
            return 50
        return orig_type(val)

    def norm(v):
        if isinstance(v, Decimal128):
            d = v.to_decimal()
            return float(d) if (d.is_nan() or d.is_infinite()) else d
        return v

    def compare(op, a, b, can_compare_types=True):
        ta, tb = compare_type(a), compare_type(b)
        if ta != tb:
            return can_compare_types and op(ta, tb)
        if isinstance(a, (MinKey, MaxKey)):
            return op(0, 0)
        if isinstance(a, Regex):
            return op((a.pattern, a.flags), (b.pattern, b.flags))
        return orig_compare(op, norm(a), norm(b), can_compare_types)

    filtering._get_compare_type = compare_type
    filtering.bson_compare = compare

    def dec_eq(self, other):
        if isinstance(other, Decimal128):
            return self.bid == other.bid or norm(self) == norm(other)
        if isinstance(other, (int, float, decimal.Decimal)) and not isinstance(other, bool):
            return norm(self) == other
        return NotImplemented

    def dec_ne(self, other):
        r = dec_eq(self, other)
        return r if r is NotImplemented else not r

    def dec_hash(self):
        d = self.to_decimal()
        return hash(str(d)) if d.is_nan() else hash(d)

    def dec_order(op):
        def method(self, other):
            if isinstance(other, (Decimal128, int, float, decimal.Decimal)) and \
                    not isinstance(other, bool):
                a, b = norm(self), norm(other)
                if isinstance(a, float) or isinstance(b, float):
                    a, b = float(a), float(b)
                return op(a, b)
            return NotImplemented
        return method

    Decimal128.__eq__ = dec_eq
    Decimal128.__ne__ = dec_ne
    Decimal128.__hash__ = dec_hash
    Decimal128.__lt__ = dec_order(operator.lt)
    Decimal128.__le__ = dec_order(operator.le)
    Decimal128.__gt__ = dec_order(operator.gt)
    Decimal128.__ge__ = dec_order(operator.ge)

    # Arithmetic: Decimal128 operands give a Decimal128 result as on mongod; $round added.
    parser = aggregate._Parser
    orig_arith = parser._handle_arithmetic_operator
    aggregate.arithmetic_operators.add('$round')
    ctx128 = create_decimal128_context()

    def to_dec(v):
        if isinstance(v, Decimal128):
            return v.to_decimal()
        if isinstance(v, float):
            return decimal.Decimal(repr(v))
        return decimal.Decimal(v)

    def arith(self, op, values):
        try:
            parsed = list(self.parse_many(values)) if isinstance(values, (list, tuple)) \
                else [self.parse(values)]
        except KeyError:
            parsed = [None]
        has_dec = any(isinstance(v, Decimal128) for v in parsed)
        if op != '$round' and not has_dec:
            return orig_arith(self, op, values)
        if any(v is None for v in parsed):
            return None
        for v in parsed:
            if isinstance(v, bool) or not isinstance(v, (int, float, Decimal128)):
                raise aggregate.OperationFailure('%s only supports numeric types, not %s'
                                                 % (op, _bson_type_name(v)))
        if op == '$round':
            place = int(parsed[1]) if len(parsed) > 1 else 0
            if not has_dec:
                r = round(decimal.Decimal(repr(parsed[0]) if isinstance(parsed[0], float)
                                          else parsed[0]), place)
                return float(r) if isinstance(parsed[0], float) else int(r) if place <= 0 \
                    else float(r)
        with decimal.localcontext(ctx128):
            nums = [to_dec(v) for v in parsed]
            if op == '$add':
                r = sum(nums, decimal.Decimal(0))
            elif op == '$multiply':
                r = decimal.Decimal(1)
                for n in nums:
                    r *= n
            elif op == '$subtract':
                r = nums[0] - nums[1]
            elif op == '$divide':
                if nums[1] == 0:
                    raise aggregate.OperationFailure("can't $divide by zero")
                r = nums[0] / nums[1]
            elif op == '$mod':
                r = nums[0] % nums[1]
            elif op == '$abs':
                r = abs(nums[0])
            elif op == '$ceil':
                r = nums[0].to_integral_value(decimal.ROUND_CEILING)
            elif op == '$floor':
                r = nums[0].to_integral_value(decimal.ROUND_FLOOR)
            elif op == '$trunc':
                r = nums[0].to_integral_value(decimal.ROUND_DOWN)
            elif op == '$round':
                place = int(nums[1]) if len(nums) > 1 else 0
                r = nums[0].quantize(decimal.Decimal(1).scaleb(-place),
                                     rounding=decimal.ROUND_HALF_EVEN)
            else:
                raise NotImplementedError('%s on Decimal128 values' % op)
            return Decimal128(ctx128.create_decimal(r))

    parser._handle_arithmetic_operator = arith

    orig_avg = aggregate._GROUPING_OPERATOR_MAP['$avg']

    def avg(values):
        values = list(values)
        if not any(isinstance(v, Decimal128) for v in values):
            return orig_avg(values)
        nums = [to_dec(v) for v in values
                if isinstance(v, (int, float, Decimal128)) and not isinstance(v, bool)]
        if not nums:
            return None
        with decimal.localcontext(ctx128):
            return Decimal128(ctx128.create_decimal(sum(nums, decimal.Decimal(0)) / len(nums)))

    aggregate._GROUPING_OPERATOR_MAP['$avg'] = avg

    # $max / $min across mixed types follow BSON order instead of raising TypeError
    def extreme(pick):
        def fn(values):
            values = [v for v in values if v is not None]
            return pick(values, key=filtering.BsonComparable) if values else None
        return fn

    aggregate._GROUPING_OPERATOR_MAP['$max'] = extreme(max)
    aggregate._GROUPING_OPERATOR_MAP['$min'] = extreme(min)


# ---------------------------------------------------------------------------------------------
# CRC-32C (Castagnoli) for OP_MSG checksums.

def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------
# $jsonSchema (the common keywords) for collection validators.

def _bson_type_name(v):
    if v is None:
        return 'null'
    if isinstance(v, bool):
        return 'bool'
    if isinstance(v, Int64):
        return 'long'
    if isinstance(v, int):
        return 'int' if -2**31 <= v < 2**31 else 'long'
    if isinstance(v, float):
        return 'double'
    if isinstance(v, Decimal128):
        return 'decimal'
    if isinstance(v, str):
        return 'string'
    if isinstance(v, dict):
        return 'object'
    if isinstance(v, (list, tuple)):
        return 'array'
    if isinstance(v, (bytes, Binary, uuid.UUID)):
        return 'binData'
    if isinstance(v, ObjectId):
        return 'objectId'
    if isinstance(v, datetime.datetime):
        return 'date'
    if isinstance(v, (Regex, re.Pattern)):
        return 'regex'
    if isinstance(v, Timestamp):
        return 'timestamp'
    if isinstance(v, MinKey):
        return 'minKey'
    if isinstance(v, MaxKey):
        return 'maxKey'
    return type(v).__name__


_JSON_TYPES = {'object': {'object'}, 'array': {'array'}, 'string': {'string'},
               'boolean': {'bool'}, 'null': {'null'},
               'number': {'int', 'long', 'double', 'decimal'}}


def _num(v):
    if isinstance(v, Decimal128):
        return v.to_decimal()
    return v


def schema_failure(schema, value, path='document'):
    """The first reason `value` fails `schema` ($jsonSchema subset), or None."""
    t = _bson_type_name(value)
    if 'bsonType' in schema:
        want = schema['bsonType']
        want = set(want if isinstance(want, list) else [want])
        if 'number' in want:
            want |= _JSON_TYPES['number']
        if t not in want:
            return '%s: expected bsonType %s, got %s' % (path, sorted(want), t)
    if 'type' in schema:
        want = schema['type']
        allowed = set()
        for w in (want if isinstance(want, list) else [want]):
            allowed |= _JSON_TYPES.get(w, {w})
        if t not in allowed:
            return '%s: expected type %s, got %s' % (path, want, t)
    if 'enum' in schema and value not in schema['enum']:
        return '%s: not in enum' % path
    if t in _JSON_TYPES['number']:
        n = _num(value)
        # draft 4, as in MongoDB: exclusiveMinimum/exclusiveMaximum are booleans
        if 'minimum' in schema and (n < _num(schema['minimum']) or schema.get(
                'exclusiveMinimum') is True and n == _num(schema['minimum'])):
            return '%s: minimum %s violated' % (path, schema['minimum'])
        if 'maximum' in schema and (n > _num(schema['maximum']) or schema.get(
                'exclusiveMaximum') is True and n == _num(schema['maximum'])):
            return '%s: maximum %s violated' % (path, schema['maximum'])
    if t == 'string':
        if 'minLength' in schema and len(value) < schema['minLength']:
            return '%s: shorter than minLength' % path
        if 'maxLength' in schema and len(value) > schema['maxLength']:
            return '%s: longer than maxLength' % path
        if 'pattern' in schema and not re.search(schema['pattern'], value):
            return '%s: does not match pattern %s' % (path, schema['pattern'])
    if t == 'object':
        for req in schema.get('required', []):
            if req not in value:
                return '%s: required field %s missing' % (path, req)
        props = schema.get('properties', {})
        for k, sub in props.items():
            if k in value:
                why = schema_failure(sub, value[k], '%s.%s' % (path, k))
                if why:
                    return why
        extra = schema.get('additionalProperties', True)
        if extra is not True:
            for k in value:
                if k in props or k == '_id':
                    continue
                if extra is False:
                    return '%s: additional property %s not allowed' % (path, k)
                why = schema_failure(extra, value[k], '%s.%s' % (path, k))
                if why:
                    return why
    if t == 'array':
        if 'minItems' in schema and len(value) < schema['minItems']:
            return '%s: fewer than minItems' % path
        if 'maxItems' in schema and len(value) > schema['maxItems']:
            return '%s: more than maxItems' % path
        items = schema.get('items')
        if isinstance(items, dict):
            for i, v in enumerate(value):
                why = schema_failure(items, v, '%s.%d' % (path, i))
                if why:
                    return why
    for sub in schema.get('allOf', []):
        why = schema_failure(sub, value, path)
        if why:
            return why
    if 'anyOf' in schema and all(schema_failure(s, value, path) for s in schema['anyOf']):
        return '%s: matches none of anyOf' % path
    if 'oneOf' in schema and \
            sum(1 for s in schema['oneOf'] if not schema_failure(s, value, path)) != 1:
        return '%s: does not match exactly one of oneOf' % path
    if 'not' in schema and not schema_failure(schema['not'], value, path):
        return '%s: matches "not"' % path
    return None


# ---------------------------------------------------------------------------------------------
# Small helpers.

def command_name(cmd):
    for k in cmd:
        return k
    raise CommandError(9, 'no command name: the command document is empty')


def as_int(cmd, field, default=None, minimum=None):
    v = cmd.get(field, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float, Decimal128)):
        raise CommandError(14, "BSON field '%s' is the wrong type '%s', expected a number"
                           % (field, _bson_type_name(v)))
    if isinstance(v, Decimal128):
        v = v.to_decimal()
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)) or v != int(v):
        raise CommandError(2, "'%s' must be an integral number, got %s" % (field, v))
    v = int(v)
    if minimum is not None and v < minimum:
        raise CommandError(2, "'%s' must be >= %d, got %d" % (field, minimum, v))
    return v


def doc_arg(cmd, field, default=None):
    v = cmd.get(field, default)
    if v is None:
        return default
    if not isinstance(v, dict):
        raise CommandError(14, "BSON field '%s' is the wrong type '%s', expected type 'object'"
                           % (field, _bson_type_name(v)))
    return v


def coll_arg(cmd, name):
    coll = cmd.get(name)
    if not isinstance(coll, str):
        raise CommandError(73, "collection name has invalid type %s" % _bson_type_name(coll))
    if not coll or '\x00' in coll or coll.startswith('.') or '$' in coll:
        raise CommandError(73, 'Invalid collection name: %r' % coll)
    return coll


def check_db_name(db):
    if not isinstance(db, str) or not db or re.search(r'[/\\. "$\x00]', db) or len(db) > 63:
        raise CommandError(73, 'Invalid database name: %r' % (db,))
    return db


def sort_spec(sort):
    spec = []
    for k, v in sort.items():
        if isinstance(v, dict):
            raise CommandError(238, 'sort by %s is not supported by the test server' % (v,))
        if v not in (1, -1):
            raise CommandError(15974, 'Illegal key in $sort specification: %s: %r' % (k, v))
        spec.append((k, int(v)))
    return spec


def bson_size(doc):
    return len(bson.encode(doc))


def _distinct_values(v, parts):
    if not parts:
        if isinstance(v, list):
            yield from v
        else:
            yield v
        return
    if isinstance(v, dict):
        if parts[0] in v:
            yield from _distinct_values(v[parts[0]], parts[1:])
    elif isinstance(v, list):
        if parts[0].isdigit() and int(parts[0]) < len(v):
            yield from _distinct_values(v[int(parts[0])], parts[1:])
        for el in v:
            if isinstance(el, dict):
                yield from _distinct_values(el, parts)


def _value_key(v):
    if isinstance(v, (int, float, Decimal128)) and not isinstance(v, bool):
        n = _num(v)
        if isinstance(n, float) and math.isnan(n):
            return ('nan',)
        try:
            return ('n', decimal.Decimal(n).normalize() if not isinstance(n, float) or
                    math.isfinite(n) else n)
        except (decimal.InvalidOperation, ValueError):
            return ('n', str(n))
    return ('o', _bson_type_name(v), bson.encode({'v': v}))


def substitute_vars(obj, variables):
    """Replace "$$name" / "$$name.path" strings by {$literal: value} ($lookup's let)."""
    if isinstance(obj, str) and obj.startswith('$$'):
        name, _, path = obj[2:].partition('.')
        if name in variables:
            value = variables[name]
            for part in path.split('.') if path else []:
                value = value.get(part) if isinstance(value, dict) else None
            return {'$literal': value}
        return obj
    if isinstance(obj, dict):
        return {k: substitute_vars(v, variables) for k, v in obj.items()}
    if isinstance(obj, list):
        return [substitute_vars(v, variables) for v in obj]
    return obj


def get_path(doc, path):
    cur = doc
    for part in path.split('.'):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return None
    return cur


# ---------------------------------------------------------------------------------------------
# Roles and privileges for connectionStatus.

READ_ACTIONS = ['changeStream', 'collStats', 'dbHash', 'dbStats', 'find', 'killCursors',
                'listCollections', 'listIndexes', 'listSearchIndexes', 'planCacheRead']
WRITE_ACTIONS = ['convertToCapped', 'createCollection', 'createIndex', 'createSearchIndexes',
                 'dropCollection', 'dropIndex', 'dropSearchIndex', 'insert', 'remove',
                 'renameCollectionSameDB', 'update', 'updateSearchIndex']
DBADMIN_ACTIONS = ['bypassDocumentValidation', 'collMod', 'collStats', 'compact',
                   'convertToCapped', 'createCollection', 'createIndex', 'dbStats',
                   'dropCollection', 'dropDatabase', 'dropIndex', 'enableProfiler',
                   'listCollections', 'listIndexes', 'planCacheIndexFilter', 'planCacheRead',
                   'planCacheWrite', 'reIndex', 'renameCollectionSameDB', 'storageDetails',
                   'validate']
ADMIN_DB_ROLES = {'root', 'readAnyDatabase', 'readWriteAnyDatabase', 'dbAdminAnyDatabase',
                  'userAdminAnyDatabase', 'clusterAdmin', 'clusterMonitor', 'backup', 'restore'}


def parse_role(spec, default_db):
    if isinstance(spec, dict):
        role, db = spec.get('role'), spec.get('db', default_db)
    elif isinstance(spec, str):
        role, _, db = spec.partition('@')
        db = db or ('admin' if role in ADMIN_DB_ROLES else default_db)
    else:
        role = db = None
    if not isinstance(role, str) or not role or not isinstance(db, str) or not db:
        raise CommandError(2, 'a role is "name", "name@db" or {role, db}, not %r' % (spec,))
    return {'role': role, 'db': db}


def role_privileges(role):
    name, db = role['role'], role['db']
    on_db = {'db': db, 'collection': ''}
    any_db = {'db': '', 'collection': ''}
    cluster = {'cluster': True}
    if name == 'read':
        return [(on_db, READ_ACTIONS)]
    if name == 'readWrite':
        return [(on_db, READ_ACTIONS + WRITE_ACTIONS)]
    if name == 'dbAdmin':
        return [(on_db, DBADMIN_ACTIONS)]
    if name == 'dbOwner':
        return [(on_db, READ_ACTIONS + WRITE_ACTIONS + DBADMIN_ACTIONS +
                 ['createRole', 'createUser', 'dropRole', 'dropUser', 'grantRole',
                  'revokeRole', 'viewRole', 'viewUser'])]
    if name == 'readAnyDatabase':
        return [(any_db, READ_ACTIONS), (cluster, ['listDatabases'])]
    if name == 'readWriteAnyDatabase':
        return [(any_db, READ_ACTIONS + WRITE_ACTIONS), (cluster, ['listDatabases'])]
    if name == 'dbAdminAnyDatabase':
        return [(any_db, DBADMIN_ACTIONS), (cluster, ['listDatabases'])]
    if name == 'root':
        return [({'anyResource': True}, ['anyAction'])]
    if name == 'clusterMonitor':
        return [(cluster, ['serverStatus', 'listDatabases', 'connPoolStats', 'getLog',
                           'hostInfo', 'inprog', 'top'])]
    return []


def privileges_of(roles):
    merged = {}
    order = []
    for role in roles:
        for resource, actions in role_privileges(role):
            key = json.dumps(resource, sort_keys=True)
            if key not in merged:
                merged[key] = (resource, set())
                order.append(key)
            merged[key][1].update(actions)
    return [{'resource': merged[k][0], 'actions': sorted(merged[k][1])} for k in order]


# ---------------------------------------------------------------------------------------------
# Connections, cursors, fail point.

class Conn:
    _ids = itertools.count(1)

    def __init__(self, peer):
        self.id = next(Conn._ids)
        self.peer = peer
        self.app_name = None
        self.handshaken = False


class Cursor:
    def __init__(self, cid, ns, docs, conn_id, no_timeout=False):
        self.id = cid
        self.no_timeout = no_timeout
        self.ns = ns
        self.docs = docs
        self.pos = 0
        self.conn_id = conn_id
        self.last_used = time.monotonic()


class FailPoint:
    def __init__(self, mode, data):
        self.data = data
        self.times = None
        self.skip = 0
        self.probability = 1.0
        if mode == 'alwaysOn':
            pass
        elif isinstance(mode, dict) and 'times' in mode:
            self.times = as_int(mode, 'times', minimum=0)
        elif isinstance(mode, dict) and 'skip' in mode:
            self.skip = as_int(mode, 'skip', minimum=0)
        elif isinstance(mode, dict) and 'activationProbability' in mode:
            p = mode['activationProbability']
            if not isinstance(p, (int, float)) or not 0 <= p <= 1:
                raise CommandError(2, 'activationProbability must be between 0 and 1')
            self.probability = float(p)
        else:
            raise CommandError(2, 'mode must be "alwaysOn", "off", {times: n}, {skip: n} or '
                               '{activationProbability: p}, not %r' % (mode,))
        cmds = data.get('failCommands')
        if not isinstance(cmds, list) or not all(isinstance(c, str) for c in cmds):
            raise CommandError(2, 'data.failCommands must be an array of command names')
        self.commands = set(cmds)
        block = data.get('blockTimeMS', 0)
        if data.get('blockConnection') and (not isinstance(block, (int, float)) or block < 0):
            raise CommandError(2, 'data.blockTimeMS must be a non-negative number')
        if 'errorCode' in data and (not isinstance(data['errorCode'], int) or
                                    isinstance(data['errorCode'], bool)):
            raise CommandError(2, 'data.errorCode must be an integer')

    def fires(self, name, conn):
        """Whether this command on this connection triggers the fail point (counts it)."""
        if name not in self.commands:
            return False
        app = self.data.get('appName')
        if app is not None and conn.app_name != app:
            return False
        if self.skip > 0:
            self.skip -= 1
            return False
        if self.times is not None:
            if self.times <= 0:
                return False
            self.times -= 1
        if self.probability < 1.0 and random.random() >= self.probability:
            return False
        return True


# ---------------------------------------------------------------------------------------------
# The server.

class Server:
    def __init__(self, args):
        import mongomock
        from mongomock import aggregate as mm_aggregate
        from mongomock import filtering as mm_filtering
        _patch_mongomock(mm_filtering, mm_aggregate)
        self.mongomock = mongomock
        self.mm_aggregate = mm_aggregate
        self.filter_applies = mm_filtering.filter_applies
        self.bson_key = mm_filtering.BsonComparable
        self.args = args
        self.client = mongomock.MongoClient()
        self.coll_options = {}          # (db, coll) -> {validator, validationLevel, ...}
        self.coll_uuids = {}            # (db, coll) -> Binary subtype 4
        self.views = {}                 # (db, view) -> {_id: "db.view", viewOn, pipeline}
        self.cursors = {}
        self.failpoint = None
        self.failpoint_entered = 0
        self.user = args.user
        self.roles = [parse_role(r, args.db) for r in args.roles.split(',') if r.strip()]
        self.started = time.monotonic()
        self.connections = 0
        self.connections_total = 0
        self.cursors_opened = 0
        self.cursors_timed_out = 0
        self.command_counts = {}
        self.opcounters = {'insert': 0, 'query': 0, 'update': 0, 'delete': 0, 'getmore': 0,
                           'command': 0}
        self.commands = {
            'hello': self.cmd_hello, 'isMaster': self.cmd_hello, 'ismaster': self.cmd_hello,
            'ping': self.cmd_ping, 'buildInfo': self.cmd_build_info,
            'buildinfo': self.cmd_build_info, 'serverStatus': self.cmd_server_status,
            'connectionStatus': self.cmd_connection_status,
            'endSessions': self.cmd_ok, 'killSessions': self.cmd_ok,
            'listDatabases': self.cmd_list_databases,
            'listCollections': self.cmd_list_collections, 'listIndexes': self.cmd_list_indexes,
            'dbStats': self.cmd_db_stats, 'collStats': self.cmd_coll_stats,
            'find': self.cmd_find, 'aggregate': self.cmd_aggregate, 'count': self.cmd_count,
            'distinct': self.cmd_distinct, 'getMore': self.cmd_get_more,
            'killCursors': self.cmd_kill_cursors, 'explain': self.cmd_explain,
            'insert': self.cmd_insert, 'update': self.cmd_update, 'delete': self.cmd_delete,
            'findAndModify': self.cmd_find_and_modify,
            'findandmodify': self.cmd_find_and_modify,
            'create': self.cmd_create, 'drop': self.cmd_drop,
            'dropDatabase': self.cmd_drop_database, 'createIndexes': self.cmd_create_indexes,
            'dropIndexes': self.cmd_drop_indexes, 'deleteIndexes': self.cmd_drop_indexes,
            'renameCollection': self.cmd_rename_collection,
            'configureFailPoint': self.cmd_configure_fail_point,
            'cnTestSetRoles': self.cmd_test_set_roles,
            'getLastError': self.cmd_ok, 'getFreeMonitoringStatus': self.cmd_ok,
        }

    # -- fixtures ----------------------------------------------------------------------------

    def load_fixtures(self, directory, dbname):
        names = sorted(os.listdir(directory))
        mdb = self.client[dbname]
        for fname in names:
            if not fname.endswith('.json') or fname.endswith('.meta.json') or \
                    fname == 'views.json':
                continue
            coll = fname[:-len('.json')]
            with open(os.path.join(directory, fname), encoding='utf-8') as f:
                docs = json_util.loads(f.read(), json_options=JSON_OPTS)
            if not isinstance(docs, list) or not all(isinstance(d, dict) for d in docs):
                raise SystemExit('%s: expected a JSON array of documents' % fname)
            mdb._store.create_collection(coll)
            if docs:
                mdb[coll].insert_many(docs)
            meta_path = os.path.join(directory, coll + '.meta.json')
            if os.path.exists(meta_path):
                with open(meta_path, encoding='utf-8') as f:
                    meta = json_util.loads(f.read(), json_options=JSON_OPTS)
                for spec in meta.get('indexes', []):
                    self.create_index(dbname, coll, spec)
                if 'validator' in meta:
                    self.coll_options[(dbname, coll)] = {'validator': meta['validator']}
            log.info('fixture %s.%s: %d documents', dbname, coll, len(docs))
        views_path = os.path.join(directory, 'views.json')
        if os.path.exists(views_path):
            with open(views_path, encoding='utf-8') as f:
                views = json_util.loads(f.read(), json_options=JSON_OPTS)
            for v in views:
                self.create_view(dbname, v['name'], v['viewOn'], v.get('pipeline', []))
                log.info('fixture view %s.%s on %s', dbname, v['name'], v['viewOn'])

    # -- namespaces, views -------------------------------------------------------------------

    def collection_names(self, db):
        return sorted(n for n in self.client[db].list_collection_names())

    # Views are kept here, not in mongomock (which refuses '$' keys in stored documents);
    # <db>.system.views is listed and readable as on a real server.

    def has_views(self, db):
        return any(k[0] == db for k in self.views)

    def view_doc(self, db, name):
        return self.views.get((db, name))

    def view_names(self, db):
        return sorted(k[1] for k in self.views if k[0] == db)

    def system_views_docs(self, db):
        return [dict(self.views[(db, n)]) for n in self.view_names(db)]

    def resolve(self, db, name):
        """(source collection, pipeline to run first) for a collection or a view."""
        pipeline = []
        seen = set()
        while True:
            view = self.view_doc(db, name)
            if view is None:
                return name, pipeline
            if name in seen or len(seen) > 20:
                raise CommandError(2, 'view %s.%s: view cycle or too deep' % (db, name))
            seen.add(name)
            pipeline = list(view.get('pipeline', [])) + pipeline
            name = view['viewOn']

    def exists(self, db, name):
        return name in self.client[db].list_collection_names() or \
            self.view_doc(db, name) is not None

    def not_a_view(self, db, name, what):
        if self.view_doc(db, name) is not None:
            raise CommandError(166, 'Namespace %s.%s is a view, not a collection (%s)'
                               % (db, name, what))

    def source_docs(self, db, source):
        if source == 'system.views':
            return self.system_views_docs(db)
        return list(self.client[db][source].find())

    def docs_of(self, db, name):
        source, pipeline = self.resolve(db, name)
        docs = self.source_docs(db, source)
        if pipeline:
            docs = self.run_pipeline(db, docs, pipeline)
        return docs

    def ensure_created(self, db, name):
        self.client[db]._store.create_collection(name)

    def create_view(self, db, name, view_on, pipeline):
        coll_arg({'viewOn': view_on}, 'viewOn')
        if not isinstance(pipeline, list) or not all(isinstance(s, dict) for s in pipeline):
            raise CommandError(14, "'pipeline' must be an array of stages")
        for stage in pipeline:
            if set(stage) & {'$out', '$merge'}:
                raise CommandError(2, '$out and $merge cannot be used in a view definition')
        if self.exists(db, name):
            raise CommandError(48, 'Collection %s.%s already exists.' % (db, name))
        self.views[(db, name)] = {'_id': '%s.%s' % (db, name), 'viewOn': view_on,
                                  'pipeline': pipeline}

    def coll_uuid(self, db, name):
        key = (db, name)
        if key not in self.coll_uuids:
            self.coll_uuids[key] = Binary(uuid.uuid5(uuid.NAMESPACE_URL,
                                                     'mongo-test:%s.%s:%d' % (
                                                         db, name, len(self.coll_uuids))).bytes,
                                          4)
        return self.coll_uuids[key]

    # -- pipelines ---------------------------------------------------------------------------

    def run_pipeline(self, db, docs, pipeline, allow_writes=False):
        if not isinstance(pipeline, list):
            raise CommandError(14, "'pipeline' option must be specified as an array")
        mdb = self.client[db]
        pending = []

        def flush(docs):
            if pending:
                stages = list(pending)
                pending.clear()
                try:
                    docs = list(self.mm_aggregate.process_pipeline(docs, mdb, stages, None))
                except (TypeError, ValueError, AttributeError, IndexError, KeyError,
                        AssertionError, decimal.InvalidOperation) as e:
                    # mongomock checks few stage arguments: a bad one surfaces like this
                    raise CommandError(2, 'invalid pipeline (mongomock: %s: %s)'
                                       % (type(e).__name__, e))
            return docs

        for i, stage in enumerate(pipeline):
            if not isinstance(stage, dict) or len(stage) != 1:
                raise CommandError(40323, 'A pipeline stage specification object must contain '
                                   'exactly one field.')
            (op, arg), = stage.items()
            if op in ('$out', '$merge'):
                if i != len(pipeline) - 1:
                    raise CommandError(40601, '%s can only be the final stage in the pipeline'
                                       % op)
                if not allow_writes:
                    raise CommandError(2, '%s is not allowed in this context' % op)
            handler = {
                '$out': self.stage_out, '$merge': self.stage_merge,
                '$lookup': self.stage_lookup, '$unionWith': self.stage_union_with,
                '$facet': self.stage_facet, '$unset': self.stage_unset,
                '$replaceWith': self.stage_replace_with,
                '$sortByCount': self.stage_sort_by_count, '$documents': self.stage_documents,
                '$limit': self.stage_limit, '$skip': self.stage_skip,
                '$bucketAuto': self.stage_bucket_auto,
            }.get(op)
            if handler is not None:
                docs = handler(db, flush(docs), arg)
            elif op in ('$match', '$project', '$addFields', '$set', '$group', '$sort',
                        '$unwind', '$count', '$bucket', '$sample', '$replaceRoot',
                        '$graphLookup'):
                pending.append(stage)
            elif op.startswith('$'):
                raise CommandError(238, 'the aggregation stage %s is not supported by the test '
                                   'server (mongomock)' % op)
            else:
                raise CommandError(40324, "Unrecognized pipeline stage name: '%s'" % op)
        return flush(docs)

    def stage_limit(self, db, docs, n):
        if isinstance(n, bool) or not isinstance(n, (int, float)) or n <= 0:
            raise CommandError(15958, 'the limit must be positive')
        return docs[:int(n)]

    def stage_skip(self, db, docs, n):
        if isinstance(n, bool) or not isinstance(n, (int, float)) or n < 0:
            raise CommandError(15956, 'the skip must be a non-negative number')
        return docs[int(n):]

    def stage_bucket_auto(self, db, docs, arg):
        if not isinstance(arg, dict) or 'groupBy' not in arg:
            raise CommandError(40246, "$bucketAuto requires 'groupBy' and 'buckets'")
        n = arg.get('buckets')
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise CommandError(40243, "$bucketAuto 'buckets' must be a positive integer")
        if 'granularity' in arg:
            raise CommandError(238, '$bucketAuto granularity is not supported by the test '
                               'server')
        output = arg.get('output', {'count': {'$sum': 1}})
        keyed = []
        for d in docs:
            try:
                k = self.mm_aggregate._Parser(d, ignore_missing_keys=True).parse(arg['groupBy'])
            except KeyError:
                k = None
            keyed.append((k, d))
        keyed.sort(key=lambda kd: self.bson_key(kd[0]))
        size = -(-len(keyed) // n) if keyed else 0
        buckets = []
        i = 0
        while i < len(keyed):
            j = min(i + size, len(keyed))
            while j < len(keyed) and keyed[j][0] == keyed[j - 1][0]:
                j += 1  # equal values stay in one bucket
            buckets.append(keyed[i:j])
            i = j
        out = []
        for b, chunk in enumerate(buckets):
            hi = buckets[b + 1][0][0] if b + 1 < len(buckets) else chunk[-1][0]
            grouped = self.run_pipeline(db, [d for _, d in chunk],
                                        [{'$group': dict({'_id': None}, **output)}])
            doc = {'_id': {'min': chunk[0][0], 'max': hi}}
            doc.update({k: v for k, v in grouped[0].items() if k != '_id'})
            out.append(doc)
        return out

    def stage_documents(self, db, docs, arg):
        if not isinstance(arg, list) or not all(isinstance(d, dict) for d in arg):
            raise CommandError(2, '$documents must be an array of documents')
        return [dict(d) for d in arg]

    def stage_unset(self, db, docs, arg):
        fields = [arg] if isinstance(arg, str) else arg
        if not isinstance(fields, list) or not fields or \
                not all(isinstance(f, str) for f in fields):
            raise CommandError(31002, '$unset specification must be a string or an array of '
                               'strings')
        return self.run_pipeline(db, docs, [{'$project': {f: 0 for f in fields}}])

    def stage_replace_with(self, db, docs, arg):
        return self.run_pipeline(db, docs, [{'$replaceRoot': {'newRoot': arg}}])

    def stage_sort_by_count(self, db, docs, arg):
        return self.run_pipeline(db, docs, [{'$group': {'_id': arg, 'count': {'$sum': 1}}},
                                            {'$sort': {'count': -1}}])

    def stage_facet(self, db, docs, arg):
        if not isinstance(arg, dict) or not arg:
            raise CommandError(15947, 'a facet must be a non-empty object')
        out = {}
        for name, sub in arg.items():
            out[name] = self.run_pipeline(db, [dict(d) for d in docs], sub)
        return [out]

    def stage_union_with(self, db, docs, arg):
        if isinstance(arg, str):
            coll, pipeline = arg, []
        elif isinstance(arg, dict) and isinstance(arg.get('coll'), str):
            coll, pipeline = arg['coll'], arg.get('pipeline', [])
        else:
            raise CommandError(2, '$unionWith takes a collection name or {coll, pipeline}')
        return docs + self.run_pipeline(db, self.docs_of(db, coll), pipeline)

    def stage_lookup(self, db, docs, arg):
        if not isinstance(arg, dict):
            raise CommandError(2, 'the $lookup specification must be an object')
        frm, as_ = arg.get('from'), arg.get('as')
        if isinstance(frm, dict):
            if frm.get('db', db) != db:
                raise CommandError(238, '$lookup from another database is not supported by the '
                                   'test server')
            frm = frm.get('coll')
        if not isinstance(frm, str) or not isinstance(as_, str):
            raise CommandError(2, "$lookup needs string 'from' and 'as'")
        foreign = self.docs_of(db, frm)
        local_field, foreign_field = arg.get('localField'), arg.get('foreignField')
        pipeline = arg.get('pipeline')
        let = arg.get('let', {})
        if (local_field is None) != (foreign_field is None):
            raise CommandError(2, "$lookup needs both 'localField' and 'foreignField' or "
                               "neither")
        if local_field is None and pipeline is None:
            raise CommandError(2, "$lookup needs 'localField'/'foreignField' or 'pipeline'")
        out = []
        for doc in docs:
            matches = foreign
            if local_field is not None:
                local = get_path(doc, local_field)
                wanted = local if isinstance(local, list) else [local]
                matches = [f for f in foreign
                           if self.filter_applies({foreign_field: {'$in': wanted}}, f)]
            matches = [dict(m) for m in matches]
            if pipeline is not None:
                variables = {}
                for k, expr in let.items():
                    if isinstance(expr, str) and expr.startswith('$') and \
                            not expr.startswith('$$'):
                        variables[k] = get_path(doc, expr[1:])
                    else:
                        variables[k] = expr
                matches = self.run_pipeline(db, matches, substitute_vars(pipeline, variables))
            d = dict(doc)
            d[as_] = matches
            out.append(d)
        return out

    def target_ns(self, db, arg, stage):
        if isinstance(arg, str):
            return db, arg
        if isinstance(arg, dict) and isinstance(arg.get('coll'), str):
            return check_db_name(arg.get('db', db)), arg['coll']
        raise CommandError(2, '%s takes a collection name or {db, coll}' % stage)

    def stage_out(self, db, docs, arg):
        tdb, tcoll = self.target_ns(db, arg, '$out')
        self.not_a_view(tdb, tcoll, '$out')
        col = self.client[tdb][tcoll]
        col.delete_many({})
        self.ensure_created(tdb, tcoll)
        for d in docs:
            if '_id' not in d:
                d['_id'] = ObjectId()
        if docs:
            try:
                col.insert_many(docs)
            except self.mongomock.BulkWriteError as e:
                raise CommandError(11000, '$out failed: %s' % (e.details,))
        return []

    def stage_merge(self, db, docs, arg):
        if isinstance(arg, str):
            arg = {'into': arg}
        if not isinstance(arg, dict) or 'into' not in arg:
            raise CommandError(2, "$merge needs 'into'")
        tdb, tcoll = self.target_ns(db, arg['into'], '$merge')
        self.not_a_view(tdb, tcoll, '$merge')
        on = arg.get('on', '_id')
        on = [on] if isinstance(on, str) else on
        matched_mode = arg.get('whenMatched', 'merge')
        unmatched_mode = arg.get('whenNotMatched', 'insert')
        if not isinstance(matched_mode, str):
            raise CommandError(238, '$merge whenMatched pipelines are not supported by the test '
                               'server')
        if matched_mode not in ('replace', 'keepExisting', 'merge', 'fail'):
            raise CommandError(2, 'unknown whenMatched mode %r' % matched_mode)
        if unmatched_mode not in ('insert', 'discard', 'fail'):
            raise CommandError(2, 'unknown whenNotMatched mode %r' % unmatched_mode)
        col = self.client[tdb][tcoll]
        self.ensure_created(tdb, tcoll)
        for d in docs:
            if '_id' not in d:
                d['_id'] = ObjectId()
            key = {}
            for f in on:
                v = get_path(d, f)
                if v is None:
                    raise CommandError(51132, "$merge write error: 'on' field '%s' cannot be "
                                       "missing, null or an array" % f)
                key[f] = v
            existing = col.find_one(key)
            if existing is not None:
                if matched_mode == 'fail':
                    raise CommandError(11000, '$merge: a document matched with whenMatched '
                                       '"fail"')
                if matched_mode == 'keepExisting':
                    continue
                if matched_mode == 'replace':
                    new = dict(d)
                    new['_id'] = existing['_id']
                    col.replace_one({'_id': existing['_id']}, new)
                else:
                    upd = {k: v for k, v in d.items() if k != '_id'}
                    if upd:
                        col.update_one({'_id': existing['_id']}, {'$set': upd})
            else:
                if unmatched_mode == 'fail':
                    raise CommandError(13113, '$merge: no document matched with whenNotMatched '
                                       '"fail"')
                if unmatched_mode == 'discard':
                    continue
                col.insert_one(d)
        return []

    # -- cursors -----------------------------------------------------------------------------

    def new_cursor_id(self):
        while True:
            cid = random.randrange(2 ** 40, 2 ** 62)
            if cid not in self.cursors:
                return cid

    def take_batch(self, docs, start, limit):
        """(raw documents, next position): at most `limit` docs (None: no limit), 16 MiB."""
        batch = []
        size = 0
        pos = start
        while pos < len(docs) and (limit is None or len(batch) < limit):
            raw = bson.encode(docs[pos])
            if batch and size + len(raw) > MAX_BSON_SIZE:
                break
            batch.append(RawBSONDocument(raw))
            size += len(raw)
            pos += 1
        return batch, pos

    def cursor_reply(self, ctx, ns, docs, batch_size, single_batch=False, no_timeout=False):
        limit = DEFAULT_FIRST_BATCH if batch_size is None else batch_size
        batch, pos = self.take_batch(docs, 0, limit)
        cid = 0
        if pos < len(docs) and not single_batch:
            cid = self.new_cursor_id()
            self.cursors[cid] = Cursor(cid, ns, docs, ctx.conn.id, no_timeout)
            self.cursors[cid].pos = pos
            self.cursors_opened += 1
        return {'cursor': {'firstBatch': batch, 'id': Int64(cid), 'ns': ns}, 'ok': 1.0}

    def reap_cursors(self):
        limit = self.args.cursor_timeout_ms / 1000.0
        now = time.monotonic()
        for cid in [c.id for c in self.cursors.values()
                    if not c.no_timeout and now - c.last_used > limit]:
            del self.cursors[cid]
            self.cursors_timed_out += 1
            log.info('cursor %d timed out', cid)

    # -- validation --------------------------------------------------------------------------

    def validation_failure(self, db, coll, doc, ctx):
        opts = self.coll_options.get((db, coll))
        if not opts or 'validator' not in opts or ctx.cmd.get('bypassDocumentValidation'):
            return None
        if opts.get('validationLevel') == 'off':
            return None
        validator = dict(opts['validator'])
        schema = validator.pop('$jsonSchema', None)
        why = None
        if schema is not None:
            why = schema_failure(schema, doc)
        if why is None and validator and not self.filter_applies(validator, doc):
            why = 'the document does not match the validator query'
        if why and opts.get('validationAction') == 'warn':
            log.info('conn=%d validation warning on %s.%s: %s', ctx.conn.id, clean(db),
                     clean(coll), oneline(why))
            return None
        return why

    # -- index helpers -----------------------------------------------------------------------

    def index_list(self, db, coll):
        info = self.client[db][coll].index_information()
        out = []
        for name, spec in info.items():
            d = {'v': spec.get('v', 2), 'key': {k: v for k, v in spec['key']}, 'name': name}
            for k, v in spec.items():
                if k not in ('v', 'key'):
                    d[k] = v
            out.append(d)
        return out

    def create_index(self, db, coll, spec):
        if not isinstance(spec, dict) or not isinstance(spec.get('key'), dict) or \
                not spec['key']:
            raise CommandError(2, "an index specification needs a non-empty 'key' object")
        key = list(spec['key'].items())
        for _, v in key:
            if isinstance(v, bool) or not isinstance(v, (int, float, str, Int64)):
                raise CommandError(67, 'bad index key pattern %s' % (spec['key'],))
        name = spec.get('name') or '_'.join('%s_%s' % (k, v) for k, v in key)
        existing = {d['name']: d for d in self.index_list(db, coll)}
        if name in existing:
            if existing[name]['key'] != dict(key):
                raise CommandError(86, 'An existing index has the same name as the requested '
                                   'index but a different key: %s' % name)
            return False
        opts = {k: v for k, v in spec.items() if k not in ('key', 'name', 'v', 'ns')}
        try:
            self.client[db][coll].create_index(key, name=name, **opts)
        except self.mongomock.DuplicateKeyError as e:
            raise CommandError(11000, 'Index build failed: E11000 duplicate key error '
                               'collection: %s.%s index: %s (%s)' % (db, coll, name, e))
        except TypeError as e:
            raise CommandError(2, 'unsupported index option: %s' % e)
        return True

    # -- command plumbing --------------------------------------------------------------------

    async def run_command(self, conn, db, cmd, via):
        """Run one command; returns the reply document. Raises CloseConnection."""
        t0 = time.monotonic()
        name = None
        try:
            name = command_name(cmd)
            coll = cmd.get('collection') if name == 'getMore' else cmd.get(name)
            extra = ''
            pipeline = cmd.get('pipeline')
            if name == 'explain' and isinstance(coll, dict) and coll:
                inner = next(iter(coll))
                extra = ' explains=%s' % clean(inner)
                pipeline = coll.get('pipeline') if inner == 'aggregate' else None
                coll = coll.get(inner)
            elif name != 'aggregate':
                pipeline = None
            if isinstance(pipeline, list):
                extra += ' stages=' + ','.join(
                    clean(next(iter(st))) if isinstance(st, dict) and st else '?'
                    for st in pipeline)
            log.info('conn=%d %s cmd=%s db=%s coll=%s%s', conn.id, via, clean(name), clean(db),
                     clean(coll) if isinstance(coll, str) else '-', extra)
            self.command_counts.setdefault(name, [0, 0])[0] += 1
            if not isinstance(db, str):
                raise CommandError(40571, 'OP_MSG requests require a $db argument')
            check_db_name(db)
            handler = self.commands.get(name)
            if handler is None:
                raise CommandError(59, "no such command: '%s'" % name)
            max_time = cmd.get('maxTimeMS')
            if max_time is not None:
                max_time = as_int(cmd, 'maxTimeMS', minimum=0) or None
            fp = self.failpoint
            fired = False
            if fp is not None and name != 'configureFailPoint' and fp.fires(name, conn):
                fired = True
                self.failpoint_entered += 1
                data = fp.data
                log.info('conn=%d failCommand fires for %s', conn.id, clean(name))
                if data.get('blockConnection'):
                    block = float(data.get('blockTimeMS', 0)) / 1000.0
                    if max_time is not None and max_time / 1000.0 < block:
                        await asyncio.sleep(max_time / 1000.0)
                        raise CommandError(50, 'operation exceeded time limit')
                    await asyncio.sleep(block)
                if data.get('closeConnection'):
                    raise CloseConnection()
                if 'errorCode' in data:
                    extra_fields = {}
                    if 'errorLabels' in data:
                        extra_fields['errorLabels'] = data['errorLabels']
                    raise CommandError(data['errorCode'],
                                       "Failing command via 'failCommand' failpoint",
                                       **extra_fields)
            ctx = Ctx(self, conn, db, cmd, name)
            reply = handler(ctx)
            if max_time is not None and name not in WRITE_COMMANDS and \
                    (time.monotonic() - t0) * 1000 > max_time:
                self.kill_reply_cursor(reply)
                raise CommandError(50, 'operation exceeded time limit')
            if fired and 'writeConcernError' in fp.data:
                reply['writeConcernError'] = fp.data['writeConcernError']
            if reply.get('writeErrors'):
                log.info('conn=%d writeErrors cmd=%s codes=%s', conn.id, clean(name),
                         ','.join(str(e.get('code')) for e in reply['writeErrors']))
            return reply
        except CommandError as e:
            if name in self.command_counts:
                self.command_counts[name][1] += 1
            log.info('conn=%d error cmd=%s code=%d %s: %s', conn.id, clean(name), e.code,
                     code_name(e.code), oneline(e.msg))
            return e.reply()
        except self.mongomock.OperationFailure as e:
            code = e.code if isinstance(getattr(e, 'code', None), int) else 2
            log.info('conn=%d error cmd=%s code=%d (mongomock): %s', conn.id, clean(name), code,
                     oneline(e))
            return CommandError(code, str(e)).reply()
        except bson.errors.InvalidDocument as e:
            log.info('conn=%d error cmd=%s code=2 (bson): %s', conn.id, clean(name), oneline(e))
            return CommandError(2, 'invalid document: %s' % e).reply()
        except NotImplementedError as e:
            log.info('conn=%d error cmd=%s code=238 (mongomock): %s', conn.id, clean(name),
                     oneline(e))
            return CommandError(238, 'not supported by the test server (mongomock): %s'
                                % e).reply()
        except CloseConnection:
            raise
        except Exception as e:  # a bug or malformed input: answer, never die
            log.warning('conn=%d cmd=%s raised %s: %s\n%s', conn.id, clean(name),
                        type(e).__name__, oneline(e), traceback.format_exc())
            return CommandError(2, '%s: %s' % (type(e).__name__, e)).reply()

    def kill_reply_cursor(self, reply):
        cur = reply.get('cursor') if isinstance(reply, dict) else None
        if isinstance(cur, dict) and cur.get('id'):
            self.cursors.pop(int(cur['id']), None)

    # -- admin and diagnostics ---------------------------------------------------------------

    def cmd_ok(self, ctx):
        return {'ok': 1.0}

    def cmd_ping(self, ctx):
        return {'ok': 1.0}

    def cmd_hello(self, ctx):
        cmd = ctx.cmd
        conn = ctx.conn
        if isinstance(cmd.get('client'), dict):
            if conn.handshaken:
                raise CommandError(186, 'The client metadata document may only be sent in the '
                                   'first hello')
            app = cmd['client'].get('application')
            if isinstance(app, dict) and isinstance(app.get('name'), str):
                conn.app_name = app['name']
        conn.handshaken = True
        reply = {}
        if cmd.get('helloOk'):
            reply['helloOk'] = True
        if ctx.name == 'hello':
            reply['isWritablePrimary'] = True
        else:
            reply['ismaster'] = True
        reply.update({
            'maxBsonObjectSize': MAX_BSON_SIZE,
            'maxMessageSizeBytes': MAX_MESSAGE_SIZE,
            'maxWriteBatchSize': MAX_WRITE_BATCH,
            'localTime': now_utc(),
            'logicalSessionTimeoutMinutes': 30,
            'connectionId': conn.id,
            'minWireVersion': 0,
            'maxWireVersion': self.args.max_wire_version,
            'readOnly': False,
            'ok': 1.0,
        })
        return reply

    def cmd_build_info(self, ctx):
        return {'version': VERSION, 'gitVersion': 'mongo-test-server', 'modules': [],
                'allocator': 'python', 'javascriptEngine': 'none', 'sysInfo': 'deprecated',
                'versionArray': [7, 0, 0, 0], 'bits': 64, 'debug': False,
                'maxBsonObjectSize': MAX_BSON_SIZE, 'storageEngines': ['mongomock'],
                'openssl': {'running': 'disabled'}, 'ok': 1.0}

    def cmd_server_status(self, ctx):
        up = time.monotonic() - self.started
        return {
            'host': socket.gethostname(), 'version': VERSION, 'process': 'mongod',
            'pid': Int64(os.getpid()), 'uptime': float(int(up)), 'uptimeMillis': Int64(up * 1000),
            'uptimeEstimate': Int64(up), 'localTime': now_utc(),
            'connections': {'current': self.connections, 'available': 1000000,
                            'totalCreated': self.connections_total,
                            'active': self.connections},
            'opcounters': dict(self.opcounters),
            'metrics': {
                'cursor': {'timedOut': Int64(self.cursors_timed_out),
                           'totalOpened': Int64(self.cursors_opened),
                           'open': {'total': Int64(len(self.cursors)),
                                    'noTimeout': Int64(sum(1 for c in self.cursors.values()
                                                           if c.no_timeout)),
                                    'pinned': Int64(0)}},
                'commands': {n: {'total': Int64(c[0]), 'failed': Int64(c[1])}
                             for n, c in sorted(self.command_counts.items())},
            },
            'ok': 1.0}

    def cmd_connection_status(self, ctx):
        info = {'authenticatedUsers': [{'user': self.user, 'db': 'admin'}] if self.roles
                else [],
                'authenticatedUserRoles': [dict(r) for r in self.roles]}
        if ctx.cmd.get('showPrivileges'):
            info['authenticatedUserPrivileges'] = privileges_of(self.roles)
        return {'authInfo': info, 'ok': 1.0}

    def cmd_test_set_roles(self, ctx):
        ctx.admin_only()
        roles = ctx.cmd['cnTestSetRoles']
        if not isinstance(roles, list):
            raise CommandError(14, 'cnTestSetRoles takes an array of roles')
        self.roles = [parse_role(r, self.args.db) for r in roles]
        log.info('conn=%d test-only: roles now %s', ctx.conn.id,
                 clean(','.join('%s@%s' % (r['role'], r['db']) for r in self.roles)) or '(none)')
        return {'roles': [dict(r) for r in self.roles], 'ok': 1.0}

    def cmd_configure_fail_point(self, ctx):
        ctx.admin_only()
        what = ctx.cmd['configureFailPoint']
        if what != 'failCommand':
            raise CommandError(2, "the test server only has the 'failCommand' fail point, not "
                               "%r" % (what,))
        mode = ctx.cmd.get('mode')
        count = self.failpoint_entered
        if mode == 'off':
            self.failpoint = None
        else:
            data = doc_arg(ctx.cmd, 'data', {})
            self.failpoint = FailPoint(mode, data)
            self.failpoint_entered = 0
        log.info('conn=%d failCommand fail point %s', ctx.conn.id,
                 'off' if self.failpoint is None else 'on for %s' %
                 ','.join(sorted(self.failpoint.commands)))
        return {'count': count, 'ok': 1.0}

    def cmd_list_databases(self, ctx):
        ctx.admin_only()
        filt = doc_arg(ctx.cmd, 'filter', {})
        dbs = []
        total = 0
        names = set(self.client.list_database_names()) | {'admin', 'config', 'local'}
        for name in sorted(names):
            mdb = self.client[name]
            size = 0
            for coll in mdb.list_collection_names():
                size += sum(bson_size(d) for d in mdb[coll].find())
            colls = mdb.list_collection_names()
            if name not in ('admin', 'config', 'local') and not colls and \
                    not self.has_views(name):
                continue
            entry = {'name': name, 'sizeOnDisk': Int64(size + 4096 * (len(colls) + 1)),
                     'empty': not colls}
            if filt and not self.filter_applies(filt, entry):
                continue
            total += int(entry['sizeOnDisk'])
            dbs.append({'name': name} if ctx.cmd.get('nameOnly') else entry)
        reply = {'databases': dbs, 'ok': 1.0}
        if not ctx.cmd.get('nameOnly'):
            reply['totalSize'] = Int64(total)
            reply['totalSizeMb'] = Int64(total // (1024 * 1024))
        return reply

    def cmd_list_collections(self, ctx):
        db = ctx.db
        filt = doc_arg(ctx.cmd, 'filter', {})
        name_only = bool(ctx.cmd.get('nameOnly'))
        entries = []
        names = self.collection_names(db)
        if self.has_views(db):
            names = sorted(names + ['system.views'])
        for name in names:
            opts = dict(self.coll_options.get((db, name), {}))
            entries.append({
                'name': name, 'type': 'collection', 'options': opts,
                'info': {'readOnly': False, 'uuid': self.coll_uuid(db, name)},
                'idIndex': {'v': 2, 'key': {'_id': 1}, 'name': '_id_'}})
        for name in self.view_names(db):
            v = self.view_doc(db, name)
            entries.append({'name': name, 'type': 'view',
                            'options': {'viewOn': v['viewOn'], 'pipeline': v['pipeline']},
                            'info': {'readOnly': True}})
        entries.sort(key=lambda e: e['name'])
        if filt:
            entries = [e for e in entries if self.filter_applies(filt, e)]
        if name_only:
            entries = [{'name': e['name'], 'type': e['type']} for e in entries]
        cursor = doc_arg(ctx.cmd, 'cursor', {})
        return self.cursor_reply(ctx, '%s.$cmd.listCollections' % db, entries,
                                 as_int(cursor, 'batchSize', minimum=0))

    def cmd_list_indexes(self, ctx):
        coll = coll_arg(ctx.cmd, 'listIndexes')
        self.not_a_view(ctx.db, coll, 'listIndexes')
        if coll not in self.client[ctx.db].list_collection_names():
            raise CommandError(26, 'ns does not exist: %s.%s' % (ctx.db, coll))
        cursor = doc_arg(ctx.cmd, 'cursor', {})
        return self.cursor_reply(ctx, '%s.%s' % (ctx.db, coll), self.index_list(ctx.db, coll),
                                 as_int(cursor, 'batchSize', minimum=0))

    def cmd_db_stats(self, ctx):
        mdb = self.client[ctx.db]
        colls = mdb.list_collection_names()
        objects = size = indexes = 0
        for c in colls:
            docs = list(mdb[c].find())
            objects += len(docs)
            size += sum(bson_size(d) for d in docs)
            indexes += len(mdb[c].index_information())
        return {'db': ctx.db, 'collections': len(colls), 'views': len(self.view_names(ctx.db)),
                'objects': objects, 'avgObjSize': float(size) / objects if objects else 0.0,
                'dataSize': float(size), 'storageSize': float(size), 'indexes': indexes,
                'indexSize': 0.0, 'totalSize': float(size), 'scaleFactor': 1, 'ok': 1.0}

    def cmd_coll_stats(self, ctx):
        coll = coll_arg(ctx.cmd, 'collStats')
        self.not_a_view(ctx.db, coll, 'collStats')
        if coll not in self.client[ctx.db].list_collection_names():
            raise CommandError(26, 'ns does not exist: %s.%s' % (ctx.db, coll))
        docs = list(self.client[ctx.db][coll].find())
        size = sum(bson_size(d) for d in docs)
        idx = self.index_list(ctx.db, coll)
        return {'ns': '%s.%s' % (ctx.db, coll), 'count': len(docs), 'size': size,
                'avgObjSize': size // len(docs) if docs else 0, 'storageSize': size,
                'nindexes': len(idx), 'indexSizes': {d['name']: 0 for d in idx},
                'totalIndexSize': 0, 'totalSize': size, 'capped': False, 'ok': 1.0}

    # -- reads -------------------------------------------------------------------------------

    def apply_let(self, cmd, obj):
        """A command's let: {name: constant expression}: "$$name" in obj becomes its value."""
        let = doc_arg(cmd, 'let')
        if not let:
            return obj
        variables = {}
        for k, expr in let.items():
            if isinstance(expr, str) and expr.startswith('$') and not expr.startswith('$$'):
                raise CommandError(17276, "Use of undefined variable: let %s refers to a field"
                                   % k)
            try:
                variables[k] = self.mm_aggregate._Parser({}).parse(expr)
            except KeyError:
                variables[k] = None
        return substitute_vars(obj, variables)

    def find_docs(self, ctx, cmd, coll):
        db = ctx.db
        filt = self.apply_let(cmd, doc_arg(cmd, 'filter', {}))
        projection = doc_arg(cmd, 'projection')
        sort = doc_arg(cmd, 'sort')
        skip = as_int(cmd, 'skip', 0, minimum=0)
        limit = as_int(cmd, 'limit', 0)
        if limit < 0:
            raise CommandError(51024, "BSON field 'limit' value must be >= 0, actual value "
                               "'%d'" % limit)
        for k in ('min', 'max', 'returnKey', 'showRecordId', 'tailable', 'awaitData'):
            if cmd.get(k):
                raise CommandError(238, "find option '%s' is not supported by the test server"
                                   % k)
        if 'collation' in cmd:
            ctx.note('collation ignored')
        source, pipeline = self.resolve(db, coll)
        if pipeline or source == 'system.views':
            stages = list(pipeline) + [{'$match': filt}]
            if sort:
                stages.append({'$sort': sort})
            if skip:
                stages.append({'$skip': skip})
            if limit:
                stages.append({'$limit': limit})
            if projection:
                stages.append({'$project': projection})
            docs = self.run_pipeline(db, self.source_docs(db, source), stages)
        else:
            cur = self.client[db][source].find(filt, projection or None)
            if sort:
                cur = cur.sort(sort_spec(sort))
            if skip:
                cur = cur.skip(skip)
            if limit:
                cur = cur.limit(limit)
            docs = list(cur)
        return docs

    def cmd_find(self, ctx):
        coll = coll_arg(ctx.cmd, 'find')
        docs = self.find_docs(ctx, ctx.cmd, coll)
        self.opcounters['query'] += 1
        batch_size = as_int(ctx.cmd, 'batchSize', None, minimum=0)
        single = bool(ctx.cmd.get('singleBatch'))
        limit = as_int(ctx.cmd, 'limit', 0)
        if single and limit and (batch_size is None or batch_size > limit):
            batch_size = limit
        return self.cursor_reply(ctx, '%s.%s' % (ctx.db, coll), docs, batch_size, single,
                                 bool(ctx.cmd.get('noCursorTimeout')))

    def aggregate_docs(self, ctx, cmd, allow_writes):
        target = cmd.get('aggregate')
        pipeline = cmd.get('pipeline')
        if not isinstance(pipeline, list):
            raise CommandError(14, "'pipeline' option must be specified as an array")
        pipeline = self.apply_let(cmd, pipeline)
        if 'collation' in cmd:
            ctx.note('collation ignored')
        if target == 1 and not isinstance(target, bool):
            if not pipeline or not isinstance(pipeline[0], dict) or \
                    '$documents' not in pipeline[0]:
                raise CommandError(238, 'aggregate: 1 is only supported with $documents by the '
                                   'test server')
            return self.run_pipeline(ctx.db, [], pipeline, allow_writes), '%s.$cmd.aggregate' \
                % ctx.db
        coll = coll_arg(cmd, 'aggregate')
        writes = any(isinstance(s, dict) and set(s) & {'$out', '$merge'} for s in pipeline)
        if writes and not allow_writes:
            raise CommandError(2, '$out and $merge are not allowed here')
        docs = self.run_pipeline(ctx.db, self.docs_of(ctx.db, coll), pipeline, allow_writes)
        return docs, '%s.%s' % (ctx.db, coll)

    def cmd_aggregate(self, ctx):
        cmd = ctx.cmd
        if cmd.get('explain'):
            return self.explain_reply(ctx, {k: v for k, v in cmd.items() if k != 'explain'},
                                      'queryPlanner')
        if 'cursor' not in cmd:
            raise CommandError(9, "The 'cursor' option is required, except for aggregate with "
                               "the explain argument")
        cursor = doc_arg(cmd, 'cursor', {})
        batch_size = as_int(cursor, 'batchSize', None, minimum=0)
        pipeline = cmd.get('pipeline')
        writes = isinstance(pipeline, list) and any(
            isinstance(s, dict) and set(s) & {'$out', '$merge'} for s in pipeline)
        docs, ns = self.aggregate_docs(ctx, cmd, allow_writes=True)
        self.opcounters['command'] += 1
        if writes:
            docs = []
        return self.cursor_reply(ctx, ns, docs, batch_size)

    def count_docs(self, ctx, cmd):
        coll = coll_arg(cmd, 'count')
        query = doc_arg(cmd, 'query', {})
        skip = as_int(cmd, 'skip', 0, minimum=0)
        limit = abs(as_int(cmd, 'limit', 0))
        if 'collation' in cmd:
            ctx.note('collation ignored')
        source, pipeline = self.resolve(ctx.db, coll)
        if pipeline or source == 'system.views':
            docs = self.run_pipeline(ctx.db, self.source_docs(ctx.db, source),
                                     pipeline + [{'$match': query}])
            n = len(docs)
        else:
            n = self.client[ctx.db][source].count_documents(query)
        n = max(0, n - skip)
        if limit:
            n = min(n, limit)
        return n

    def cmd_count(self, ctx):
        n = self.count_docs(ctx, ctx.cmd)
        self.opcounters['command'] += 1
        return {'n': n, 'ok': 1.0}

    def distinct_values(self, ctx, cmd):
        coll = coll_arg(cmd, 'distinct')
        key = cmd.get('key')
        if not isinstance(key, str):
            raise CommandError(14, "BSON field 'distinct.key' is missing or not a string")
        query = doc_arg(cmd, 'query', {})
        if 'collation' in cmd:
            ctx.note('collation ignored')
        source, pipeline = self.resolve(ctx.db, coll)
        docs = self.run_pipeline(ctx.db, self.source_docs(ctx.db, source),
                                 pipeline + [{'$match': query}])
        seen = set()
        values = []
        for d in docs:
            for v in _distinct_values(d, key.split('.')):
                k = _value_key(v)
                if k not in seen:
                    seen.add(k)
                    values.append(v)
        return values

    def cmd_distinct(self, ctx):
        values = self.distinct_values(ctx, ctx.cmd)
        if bson_size({'values': values}) > MAX_BSON_SIZE:
            raise CommandError(17217, 'distinct too big, 16mb cap')
        self.opcounters['command'] += 1
        return {'values': values, 'ok': 1.0}

    def cmd_get_more(self, ctx):
        cid = ctx.cmd.get('getMore')
        if isinstance(cid, bool) or not isinstance(cid, int):
            raise CommandError(14, "BSON field 'getMore.getMore' is the wrong type '%s', "
                               "expected type 'long'" % _bson_type_name(cid))
        coll = ctx.cmd.get('collection')
        if not isinstance(coll, str) or not coll:
            raise CommandError(14, "BSON field 'getMore.collection' must be a string")
        batch_size = as_int(ctx.cmd, 'batchSize', None, minimum=0) or None
        cur = self.cursors.get(int(cid))
        if cur is None:
            raise CommandError(43, 'cursor id %d not found' % cid)
        ns = '%s.%s' % (ctx.db, coll)
        if cur.ns != ns and not (cur.ns.startswith('%s.$cmd.' % ctx.db) and
                                 coll.startswith('$cmd.')):
            raise CommandError(13, 'Requested getMore on namespace \'%s\', but cursor belongs '
                               'to a different namespace %s' % (ns, cur.ns))
        batch, pos = self.take_batch(cur.docs, cur.pos, batch_size)
        cur.pos = pos
        cur.last_used = time.monotonic()
        self.opcounters['getmore'] += 1
        out_id = cur.id
        if pos >= len(cur.docs):
            del self.cursors[cur.id]
            out_id = 0
        return {'cursor': {'nextBatch': batch, 'id': Int64(out_id), 'ns': cur.ns}, 'ok': 1.0}

    def cmd_kill_cursors(self, ctx):
        coll_arg(ctx.cmd, 'killCursors')
        ids = ctx.cmd.get('cursors')
        if not isinstance(ids, list):
            raise CommandError(14, "BSON field 'killCursors.cursors' must be an array")
        killed, not_found = [], []
        for cid in ids:
            if isinstance(cid, int) and not isinstance(cid, bool) and \
                    self.cursors.pop(int(cid), None) is not None:
                killed.append(Int64(cid))
            else:
                not_found.append(Int64(cid) if isinstance(cid, int) else cid)
        return {'cursorsKilled': killed, 'cursorsNotFound': not_found, 'cursorsAlive': [],
                'cursorsUnknown': [], 'ok': 1.0}

    # -- explain -----------------------------------------------------------------------------

    def plan_for(self, db, coll, filt):
        source, _ = self.resolve(db, coll)
        keys = set(filt or {})
        if source in self.client[db].list_collection_names():
            for idx in self.index_list(db, source):
                first = next(iter(idx['key']))
                if first in keys:
                    return {'stage': 'FETCH', 'filter': filt, 'inputStage': {
                        'stage': 'IXSCAN', 'keyPattern': idx['key'], 'indexName': idx['name'],
                        'isMultiKey': False, 'isUnique': bool(idx.get('unique')),
                        'direction': 'forward',
                        'indexBounds': {k: ['[MinKey, MaxKey]'] for k in idx['key']}}}
        return {'stage': 'COLLSCAN', 'filter': filt or {}, 'direction': 'forward'}

    def explain_reply(self, ctx, inner, verbosity):
        name = command_name(inner)
        db = ctx.db
        server_info = {'host': socket.gethostname(), 'port': self.args.port,
                       'version': VERSION, 'gitVersion': 'mongo-test-server'}
        command = {k: v for k, v in inner.items()
                   if k not in ('lsid', '$clusterTime', '$readPreference', 'txnNumber')}
        command['$db'] = db
        ex_stats = verbosity in ('executionStats', 'allPlansExecution')
        t0 = time.monotonic()
        if name == 'aggregate':
            coll = inner.get('aggregate')
            pipeline = inner.get('pipeline')
            if not isinstance(pipeline, list):
                raise CommandError(14, "'pipeline' option must be specified as an array")
            first_match = pipeline[0].get('$match') if pipeline and \
                isinstance(pipeline[0], dict) else None
            coll_name = coll if isinstance(coll, str) else '$cmd.aggregate'
            planner = {'namespace': '%s.%s' % (db, coll_name), 'parsedQuery': first_match or {},
                       'winningPlan': self.plan_for(db, coll_name, first_match),
                       'rejectedPlans': []}
            cursor_stage = {'queryPlanner': planner}
            writes = any(isinstance(s, dict) and set(s) & {'$out', '$merge'} for s in pipeline)
            if ex_stats and not writes:
                docs, _ = self.aggregate_docs(ctx, inner, allow_writes=False)
                cursor_stage['executionStats'] = {
                    'executionSuccess': True, 'nReturned': len(docs),
                    'executionTimeMillis': int((time.monotonic() - t0) * 1000),
                    'totalKeysExamined': 0, 'totalDocsExamined': 0}
            stages = [{'$cursor': cursor_stage}] + [s for s in pipeline[1 if first_match
                                                                         is not None else 0:]]
            return {'explainVersion': '1', 'stages': stages, 'command': command,
                    'serverInfo': server_info, 'ok': 1.0}
        if name not in ('find', 'count', 'distinct', 'update', 'delete', 'findAndModify'):
            raise CommandError(2, 'Explain failed due to unknown command: %s' % name)
        coll = coll_arg(inner, name)
        filt = inner.get({'find': 'filter', 'count': 'query', 'distinct': 'query',
                          'findAndModify': 'query'}.get(name, 'q'))
        if name in ('update', 'delete'):
            stmts = inner.get(name + 's') or [{}]
            filt = stmts[0].get('q') if isinstance(stmts[0], dict) else None
        plan = self.plan_for(db, coll, filt if isinstance(filt, dict) else None)
        if name == 'count':
            plan = {'stage': 'COUNT', 'inputStage': plan}
        reply = {'explainVersion': '1',
                 'queryPlanner': {'namespace': '%s.%s' % (db, coll), 'indexFilterSet': False,
                                  'parsedQuery': filt if isinstance(filt, dict) else {},
                                  'winningPlan': plan, 'rejectedPlans': []},
                 'command': command, 'serverInfo': server_info, 'ok': 1.0}
        if ex_stats and name in ('find', 'count', 'distinct'):
            if name == 'find':
                n = len(self.find_docs(ctx, inner, coll))
            elif name == 'count':
                n = self.count_docs(ctx, inner)
            else:
                n = len(self.distinct_values(ctx, inner))
            source, _ = self.resolve(db, coll)
            reply['executionStats'] = {
                'executionSuccess': True, 'nReturned': n,
                'executionTimeMillis': int((time.monotonic() - t0) * 1000),
                'totalKeysExamined': 0,
                'totalDocsExamined': len(self.source_docs(db, source)),
                'executionStages': plan}
        return reply

    def cmd_explain(self, ctx):
        inner = doc_arg(ctx.cmd, 'explain')
        if not inner:
            raise CommandError(2, 'explain needs a command document')
        verbosity = ctx.cmd.get('verbosity', 'allPlansExecution')
        if verbosity not in ('queryPlanner', 'executionStats', 'allPlansExecution'):
            raise CommandError(2, 'unknown explain verbosity %r' % (verbosity,))
        return self.explain_reply(ctx, inner, verbosity)

    # -- writes ------------------------------------------------------------------------------

    def write_target(self, ctx, field):
        coll = coll_arg(ctx.cmd, field)
        if coll.startswith('system.'):
            raise CommandError(73, 'cannot write to %s.%s' % (ctx.db, coll))
        self.not_a_view(ctx.db, coll, field)
        return coll, self.client[ctx.db][coll]

    def cmd_insert(self, ctx):
        coll, col = self.write_target(ctx, 'insert')
        docs = ctx.cmd.get('documents')
        if not isinstance(docs, list) or not all(isinstance(d, dict) for d in docs):
            raise CommandError(14, "BSON field 'insert.documents' must be an array of "
                               "documents")
        if len(docs) > MAX_WRITE_BATCH:
            raise CommandError(16, 'Write batch sizes must be between 1 and %d'
                               % MAX_WRITE_BATCH)
        ordered = ctx.cmd.get('ordered', True)
        n = 0
        errors = []
        self.ensure_created(ctx.db, coll)
        for i, doc in enumerate(docs):
            self.opcounters['insert'] += 1
            if '_id' not in doc:
                doc = dict({'_id': ObjectId()}, **doc)
            why = self.validation_failure(ctx.db, coll, doc, ctx)
            if why:
                errors.append({'index': i, 'code': 121, 'errmsg': 'Document failed validation',
                               'errInfo': {'failingDocumentId': doc['_id'],
                                           'details': {'reason': why}}})
            else:
                try:
                    col.insert_one(doc)
                    n += 1
                except self.mongomock.DuplicateKeyError as e:
                    errors.append({'index': i, 'code': 11000,
                                   'errmsg': 'E11000 duplicate key error collection: %s.%s '
                                             '(%s)' % (ctx.db, coll, e)})
                except (self.mongomock.OperationFailure, bson.errors.InvalidDocument,
                        ValueError, TypeError) as e:
                    errors.append({'index': i, 'code': getattr(e, 'code', None) or 2,
                                   'errmsg': str(e)})
            if errors and ordered:
                break
        reply = {'n': n, 'ok': 1.0}
        if errors:
            reply['writeErrors'] = errors
        return reply

    def apply_update(self, ctx, db, coll, col, q, u, upsert, multi, array_filters):
        """(matched, modified, upserted id or None) for one update statement."""
        if array_filters:
            raise CommandError(238, 'arrayFilters are not supported by the test server')
        if isinstance(u, list):
            if upsert:
                raise CommandError(238, 'upsert with a pipeline update is not supported by the '
                                   'test server')
            targets = list(col.find(q))
            if not multi:
                targets = targets[:1]
            modified = 0
            for doc in targets:
                new = self.run_pipeline(db, [dict(doc)], u)
                if len(new) != 1:
                    raise CommandError(2, 'an update pipeline must produce one document')
                new = new[0]
                new['_id'] = doc['_id']
                why = self.validation_failure(db, coll, new, ctx)
                if why:
                    raise CommandError(121, 'Document failed validation: %s' % why)
                if new != doc:
                    col.replace_one({'_id': doc['_id']}, new)
                    modified += 1
            return len(targets), modified, None
        if not isinstance(u, dict):
            raise CommandError(14, "the update 'u' must be a document or a pipeline")
        is_ops = bool(u) and all(k.startswith('$') for k in u)
        if not is_ops and any(k.startswith('$') for k in u):
            raise CommandError(9, 'an update mixes operators and fields')
        if not is_ops and multi:
            raise CommandError(9, 'multi update is not supported for replacement-style update')
        has_validator = (db, coll) in self.coll_options and \
            'validator' in self.coll_options[(db, coll)]
        before = list(col.find(q)) if has_validator else None
        try:
            if is_ops:
                res = (col.update_many if multi else col.update_one)(q, u, upsert=upsert)
            else:
                res = col.replace_one(q, u, upsert=upsert)
        except (ValueError, TypeError, bson.errors.InvalidDocument) as e:
            raise CommandError(2, 'invalid update: %s' % e)
        if has_validator:
            ids = [d['_id'] for d in before] if multi else [d['_id'] for d in before[:1]]
            if res.upserted_id is not None:
                ids = [res.upserted_id]
            for did in ids:
                now = col.find_one({'_id': did})
                why = now is not None and self.validation_failure(db, coll, now, ctx)
                if why:
                    # roll back the whole statement
                    for old in before:
                        col.replace_one({'_id': old['_id']}, old)
                    if res.upserted_id is not None:
                        col.delete_one({'_id': res.upserted_id})
                    raise CommandError(121, 'Document failed validation: %s' % why)
        return res.matched_count, res.modified_count, res.upserted_id

    def cmd_update(self, ctx):
        coll, col = self.write_target(ctx, 'update')
        stmts = ctx.cmd.get('updates')
        if not isinstance(stmts, list) or not all(isinstance(s, dict) for s in stmts):
            raise CommandError(14, "BSON field 'update.updates' must be an array of documents")
        ordered = ctx.cmd.get('ordered', True)
        n = modified = 0
        upserted = []
        errors = []
        existed = coll in self.client[ctx.db].list_collection_names()
        for i, st in enumerate(stmts):
            self.opcounters['update'] += 1
            try:
                if 'collation' in st:
                    ctx.note('collation ignored')
                q = doc_arg(st, 'q', {})
                m, mod, up = self.apply_update(ctx, ctx.db, coll, col, q, st.get('u'),
                                               bool(st.get('upsert')), bool(st.get('multi')),
                                               st.get('arrayFilters'))
                n += m
                modified += mod
                if up is not None:
                    n += 1
                    upserted.append({'index': i, '_id': up})
            except CommandError as e:
                errors.append({'index': i, 'code': e.code, 'errmsg': e.msg})
            except self.mongomock.DuplicateKeyError as e:
                errors.append({'index': i, 'code': 11000, 'errmsg': 'E11000 %s' % e})
            except self.mongomock.OperationFailure as e:
                errors.append({'index': i, 'code': getattr(e, 'code', None) or 2,
                               'errmsg': str(e)})
            except (NotImplementedError, ValueError, TypeError, KeyError) as e:
                errors.append({'index': i, 'code': 238 if isinstance(e, NotImplementedError)
                               else 2, 'errmsg': str(e)})
            if errors and ordered:
                break
        if existed or upserted:
            self.ensure_created(ctx.db, coll)
        reply = {'n': n, 'nModified': modified, 'ok': 1.0}
        if upserted:
            reply['upserted'] = upserted
        if errors:
            reply['writeErrors'] = errors
        return reply

    def cmd_delete(self, ctx):
        coll, col = self.write_target(ctx, 'delete')
        stmts = ctx.cmd.get('deletes')
        if not isinstance(stmts, list) or not all(isinstance(s, dict) for s in stmts):
            raise CommandError(14, "BSON field 'delete.deletes' must be an array of documents")
        existed = coll in self.client[ctx.db].list_collection_names()
        ordered = ctx.cmd.get('ordered', True)
        n = 0
        errors = []
        for i, st in enumerate(stmts):
            self.opcounters['delete'] += 1
            try:
                q = doc_arg(st, 'q', {})
                limit = as_int(st, 'limit', 0)
                if limit not in (0, 1):
                    raise CommandError(9, 'The limit field in delete objects must be 0 or 1')
                res = (col.delete_one if limit == 1 else col.delete_many)(q)
                n += res.deleted_count
            except CommandError as e:
                errors.append({'index': i, 'code': e.code, 'errmsg': e.msg})
            except self.mongomock.OperationFailure as e:
                errors.append({'index': i, 'code': getattr(e, 'code', None) or 2,
                               'errmsg': str(e)})
            if errors and ordered:
                break
        if existed:
            self.ensure_created(ctx.db, coll)  # mongomock forgets emptied collections
        reply = {'n': n, 'ok': 1.0}
        if errors:
            reply['writeErrors'] = errors
        return reply

    def cmd_find_and_modify(self, ctx):
        cmd = ctx.cmd
        coll, col = self.write_target(ctx, ctx.name)
        query = doc_arg(cmd, 'query', {})
        sort = doc_arg(cmd, 'sort')
        fields = doc_arg(cmd, 'fields')
        remove = bool(cmd.get('remove'))
        update = cmd.get('update')
        new = bool(cmd.get('new'))
        upsert = bool(cmd.get('upsert'))
        if remove == (update is not None):
            raise CommandError(9, 'Either an update or remove=true must be specified')
        if remove and (new or upsert):
            raise CommandError(9, 'Cannot specify new or upsert with remove=true')
        if coll in self.client[ctx.db].list_collection_names() or upsert:
            self.ensure_created(ctx.db, coll)
        cur = col.find(query)
        if sort:
            cur = cur.sort(sort_spec(sort))
        existing = next(iter(cur.limit(1)), None)

        def project(doc):
            if doc is None or not fields:
                return doc
            return self.run_pipeline(ctx.db, [doc], [{'$project': fields}])[0]

        if remove:
            self.opcounters['delete'] += 1
            if existing is not None:
                col.delete_one({'_id': existing['_id']})
            return {'lastErrorObject': {'n': 1 if existing is not None else 0},
                    'value': project(existing), 'ok': 1.0}
        self.opcounters['update'] += 1
        if existing is not None:
            self.apply_update(ctx, ctx.db, coll, col, {'_id': existing['_id']}, update, False,
                              False, cmd.get('arrayFilters'))
            after = col.find_one({'_id': existing['_id']})
            return {'lastErrorObject': {'n': 1, 'updatedExisting': True},
                    'value': project(after if new else existing), 'ok': 1.0}
        if not upsert:
            return {'lastErrorObject': {'n': 0, 'updatedExisting': False}, 'value': None,
                    'ok': 1.0}
        _, _, up = self.apply_update(ctx, ctx.db, coll, col, query, update, True, False,
                                     cmd.get('arrayFilters'))
        after = col.find_one({'_id': up})
        return {'lastErrorObject': {'n': 1, 'updatedExisting': False, 'upserted': up},
                'value': project(after) if new else None, 'ok': 1.0}

    def cmd_create(self, ctx):
        coll = coll_arg(ctx.cmd, 'create')
        db = ctx.db
        if 'viewOn' in ctx.cmd:
            self.create_view(db, coll, ctx.cmd['viewOn'], ctx.cmd.get('pipeline', []))
            return {'ok': 1.0}
        if self.exists(db, coll):
            raise CommandError(48, 'Collection %s.%s already exists.' % (db, coll))
        opts = {}
        for k in ('validator', 'validationLevel', 'validationAction', 'capped', 'size', 'max',
                  'collation', 'timeseries', 'expireAfterSeconds', 'clusteredIndex'):
            if k in ctx.cmd:
                opts[k] = ctx.cmd[k]
        if 'validator' in opts:
            doc_arg(opts, 'validator')
        if opts.get('validationLevel', 'strict') not in ('off', 'strict', 'moderate'):
            raise CommandError(2, 'invalid validationLevel')
        if opts.get('validationAction', 'error') not in ('error', 'warn'):
            raise CommandError(2, 'invalid validationAction')
        self.ensure_created(db, coll)
        if opts:
            self.coll_options[(db, coll)] = opts
        return {'ok': 1.0}

    def cmd_drop(self, ctx):
        coll = coll_arg(ctx.cmd, 'drop')
        db = ctx.db
        if self.view_doc(db, coll) is not None:
            del self.views[(db, coll)]
            return {'ns': '%s.%s' % (db, coll), 'ok': 1.0}
        n_idx = len(self.client[db][coll].index_information()) \
            if coll in self.client[db].list_collection_names() else 0
        self.client[db].drop_collection(coll)
        self.coll_options.pop((db, coll), None)
        self.coll_uuids.pop((db, coll), None)
        return {'nIndexesWas': n_idx, 'ns': '%s.%s' % (db, coll), 'ok': 1.0}

    def cmd_drop_database(self, ctx):
        db = ctx.db
        self.client.drop_database(db)
        for key in [k for k in self.coll_options if k[0] == db]:
            del self.coll_options[key]
        for key in [k for k in self.coll_uuids if k[0] == db]:
            del self.coll_uuids[key]
        return {'dropped': db, 'ok': 1.0}

    def cmd_create_indexes(self, ctx):
        coll, col = self.write_target(ctx, 'createIndexes')
        specs = ctx.cmd.get('indexes')
        if not isinstance(specs, list) or not specs:
            raise CommandError(14, "BSON field 'createIndexes.indexes' must be a non-empty "
                               "array")
        created_coll = coll not in self.client[ctx.db].list_collection_names()
        self.ensure_created(ctx.db, coll)
        before = len(self.index_list(ctx.db, coll))
        for spec in specs:
            self.create_index(ctx.db, coll, spec)
        after = len(self.index_list(ctx.db, coll))
        reply = {'numIndexesBefore': before, 'numIndexesAfter': after,
                 'createdCollectionAutomatically': created_coll, 'ok': 1.0}
        if before == after:
            reply['note'] = 'all indexes already exist'
        return reply

    def cmd_drop_indexes(self, ctx):
        coll, col = self.write_target(ctx, ctx.name)
        if coll not in self.client[ctx.db].list_collection_names():
            raise CommandError(26, 'ns not found %s.%s' % (ctx.db, coll))
        which = ctx.cmd.get('index')
        existing = self.index_list(ctx.db, coll)
        if which == '*':
            names = [d['name'] for d in existing if d['name'] != '_id_']
        elif isinstance(which, str):
            names = [which]
        elif isinstance(which, list) and all(isinstance(n, str) for n in which):
            names = which
        elif isinstance(which, dict):
            names = [d['name'] for d in existing if d['key'] == which]
            if not names:
                raise CommandError(27, "can't find index with key: %s" % (which,))
        else:
            raise CommandError(14, "'index' must be a name, an array of names, a key pattern "
                               "or '*'")
        known = {d['name'] for d in existing}
        for n in names:
            if n == '_id_':
                raise CommandError(72, 'cannot drop _id index')
            if n not in known:
                raise CommandError(27, 'index not found with name [%s]' % n)
        for n in names:
            col.drop_index(n)
        return {'nIndexesWas': len(existing), 'ok': 1.0}

    def cmd_rename_collection(self, ctx):
        ctx.admin_only()
        src, dst = ctx.cmd.get('renameCollection'), ctx.cmd.get('to')
        if not isinstance(src, str) or not isinstance(dst, str) or '.' not in src or \
                '.' not in dst:
            raise CommandError(73, "renameCollection and 'to' must be full namespaces db.coll")
        sdb, scoll = src.split('.', 1)
        ddb, dcoll = dst.split('.', 1)
        check_db_name(sdb)
        check_db_name(ddb)
        self.not_a_view(sdb, scoll, 'renameCollection')
        if scoll not in self.client[sdb].list_collection_names():
            raise CommandError(26, 'Source collection %s does not exist' % src)
        if self.exists(ddb, dcoll):
            if not ctx.cmd.get('dropTarget'):
                raise CommandError(48, 'target namespace exists')
            self.not_a_view(ddb, dcoll, 'renameCollection')
            self.client[ddb].drop_collection(dcoll)
        if sdb == ddb:
            self.client[sdb].rename_collection(scoll, dcoll)
        else:
            docs = list(self.client[sdb][scoll].find())
            idx = [d for d in self.index_list(sdb, scoll) if d['name'] != '_id_']
            self.ensure_created(ddb, dcoll)
            if docs:
                self.client[ddb][dcoll].insert_many(docs)
            for spec in idx:
                self.create_index(ddb, dcoll, spec)
            self.client[sdb].drop_collection(scoll)
        if (sdb, scoll) in self.coll_options:
            self.coll_options[(ddb, dcoll)] = self.coll_options.pop((sdb, scoll))
        self.coll_uuids.pop((sdb, scoll), None)
        return {'ok': 1.0}


WRITE_COMMANDS = {'insert', 'update', 'delete', 'findAndModify', 'findandmodify', 'create',
                  'drop', 'dropDatabase', 'createIndexes', 'dropIndexes', 'deleteIndexes',
                  'renameCollection'}


class Ctx:
    def __init__(self, server, conn, db, cmd, name):
        self.server = server
        self.conn = conn
        self.db = db
        self.cmd = cmd
        self.name = name

    def admin_only(self):
        if self.db != 'admin':
            raise CommandError(13, '%s may only be run against the admin database.'
                               % self.name)

    def note(self, what):
        log.info('conn=%d note cmd=%s: %s', self.conn.id, clean(self.name), what)


# ---------------------------------------------------------------------------------------------
# Wire protocol.

def read_cstring(buf, pos):
    end = buf.index(b'\x00', pos)
    return buf[pos:end].decode('utf-8'), end + 1


def read_doc(buf, pos):
    if pos + 4 > len(buf):
        raise ValueError('truncated document')
    size = struct.unpack_from('<i', buf, pos)[0]
    if size < 5 or pos + size > len(buf):
        raise ValueError('bad document length %d' % size)
    return bson.decode(bytes(buf[pos:pos + size]), DECODE_OPTS), pos + size


class Protocol:
    def __init__(self, server):
        self.server = server
        self.next_id = itertools.count(1)

    def header(self, length, response_to, opcode):
        return struct.pack('<iiii', length, next(self.next_id) & 0x7FFFFFFF, response_to, opcode)

    def op_msg(self, response_to, doc):
        body = struct.pack('<I', 0) + b'\x00' + bson.encode(doc)
        return self.header(16 + len(body), response_to, OP_MSG) + body

    def op_reply(self, response_to, doc, flags=0):
        body = struct.pack('<iqii', flags, 0, 0, 1) + bson.encode(doc)
        return self.header(16 + len(body), response_to, OP_REPLY) + body

    async def handle(self, conn, header, request_id, opcode, body):
        """Bytes to send back (None: no reply). Raises CloseConnection."""
        srv = self.server
        if opcode == OP_MSG:
            if len(body) < 5:
                log.warning('conn=%d OP_MSG of %d bytes is too short; closing', conn.id,
                            len(body))
                raise CloseConnection()
            flags = struct.unpack_from('<I', body, 0)[0]
            if flags & 1:
                if len(body) < 9:
                    raise CloseConnection()
                want = struct.unpack_from('<I', body, len(body) - 4)[0]
                # the checksum covers the whole message but the checksum itself
                if crc32c(header + body[:-4]) != want:
                    log.warning('conn=%d OP_MSG checksum mismatch; closing', conn.id)
                    raise CloseConnection()
                body = body[:-4]
            more_to_come = bool(flags & 2)
            if flags & 0xFFFC:
                log.warning('conn=%d OP_MSG with unknown required flag bits 0x%x', conn.id,
                            flags)
                return self.op_msg(request_id, CommandError(
                    223, 'Unrecognized required OP_MSG flag bits 0x%x' % (flags & 0xFFFC)
                ).reply()) if not more_to_come else None
            try:
                cmd = self.parse_sections(body)
            except Exception as e:
                log.warning('conn=%d malformed OP_MSG: %s', conn.id, oneline(e))
                if more_to_come:
                    return None
                return self.op_msg(request_id, CommandError(22, 'malformed OP_MSG: %s'
                                                            % e).reply())
            db = cmd.pop('$db', None)
            reply = await srv.run_command(conn, db, cmd, 'OP_MSG')
            if more_to_come:
                return None
            return self.op_msg(request_id, reply)
        if opcode == OP_QUERY:
            try:
                flags = struct.unpack_from('<i', body, 0)[0]
                ns, pos = read_cstring(body, 4)
                skip, nret = struct.unpack_from('<ii', body, pos)
                query, pos = read_doc(body, pos + 8)
            except Exception as e:
                log.warning('conn=%d malformed OP_QUERY: %s', conn.id, oneline(e))
                return self.op_reply(request_id, {'$err': 'malformed OP_QUERY: %s' % e,
                                                  'code': 22, 'ok': 0.0}, flags=2)
            del flags, skip, nret
            if not ns.endswith('.$cmd'):
                log.info('conn=%d OP_QUERY on %s refused', conn.id, clean(ns))
                return self.op_reply(request_id, {
                    '$err': 'Unsupported OP_QUERY on %s. The client driver may require an '
                            'upgrade.' % ns, 'code': 352, 'ok': 0.0}, flags=2)
            db = ns[:-len('.$cmd')]
            if '$query' in query and isinstance(query['$query'], dict):
                query = query['$query']
            elif 'query' in query and isinstance(query['query'], dict) and len(query) <= 3 \
                    and next(iter(query)) == 'query':
                query = query['query']
            reply = await srv.run_command(conn, db, query, 'OP_QUERY')
            return self.op_reply(request_id, reply)
        log.warning('conn=%d unsupported opcode %d (%s); closing', conn.id, opcode,
                    LEGACY_OPS.get(opcode, 'unknown'))
        raise CloseConnection()

    def parse_sections(self, body):
        pos = 4
        cmd = None
        seqs = []
        while pos < len(body):
            kind = body[pos]
            pos += 1
            if kind == 0:
                if cmd is not None:
                    raise ValueError('more than one kind-0 section')
                cmd, pos = read_doc(body, pos)
            elif kind == 1:
                if pos + 4 > len(body):
                    raise ValueError('truncated document sequence')
                size = struct.unpack_from('<i', body, pos)[0]
                end = pos + size
                if size < 5 or end > len(body):
                    raise ValueError('bad document sequence length %d' % size)
                ident, p = read_cstring(body, pos + 4)
                docs = []
                while p < end:
                    d, p = read_doc(body[:end], p)
                    docs.append(d)
                seqs.append((ident, docs))
                pos = end
            else:
                raise ValueError('unknown section kind %d' % kind)
        if cmd is None:
            raise ValueError('no kind-0 body section')
        for ident, docs in seqs:
            if ident in cmd:
                raise ValueError("document sequence '%s' duplicates a body field" % ident)
            cmd[ident] = docs
        return cmd

    async def serve(self, reader, writer):
        srv = self.server
        peer = writer.get_extra_info('peername')
        conn = Conn(peer)
        srv.connections += 1
        srv.connections_total += 1
        log.info('conn=%d open from %s', conn.id, peer)
        sock = writer.get_extra_info('socket')
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        try:
            while True:
                try:
                    header = await reader.readexactly(16)
                except asyncio.IncompleteReadError as e:
                    if e.partial:
                        log.warning('conn=%d truncated header (%d of 16 bytes); closing',
                                    conn.id, len(e.partial))
                    break
                length, request_id, _, opcode = struct.unpack('<iiii', header)
                if length < 16 or length > MAX_MESSAGE_SIZE:
                    log.warning('conn=%d message length %d out of range; closing', conn.id,
                                length)
                    break
                try:
                    body = await reader.readexactly(length - 16)
                except asyncio.IncompleteReadError as e:
                    log.warning('conn=%d truncated message (%d of %d bytes); closing', conn.id,
                                16 + len(e.partial), length)
                    break
                try:
                    out = await self.handle(conn, header, request_id, opcode, body)
                except CloseConnection:
                    log.info('conn=%d closed by the server', conn.id)
                    break
                if out is not None:
                    writer.write(out)
                    await writer.drain()
        except (ConnectionError, OSError) as e:
            log.info('conn=%d connection error: %s', conn.id, e)
        except asyncio.CancelledError:
            pass
        except Exception as e:
            log.warning('conn=%d unexpected %s: %s\n%s', conn.id, type(e).__name__, e,
                        traceback.format_exc())
        finally:
            srv.connections -= 1
            log.info('conn=%d closed', conn.id)
            try:
                writer.close()
            except Exception:
                pass


# ---------------------------------------------------------------------------------------------
# Entry points.

def ping(port, host='127.0.0.1', timeout=1.0):
    cmd = bson.encode({'ping': 1, '$db': 'admin'})
    body = struct.pack('<I', 0) + b'\x00' + cmd
    msg = struct.pack('<iiii', 16 + len(body), 1, 0, OP_MSG) + body
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(msg)
            data = b''
            while len(data) < 16 or len(data) < struct.unpack_from('<i', data, 0)[0]:
                chunk = s.recv(65536)
                if not chunk:
                    return False
                data += chunk
        reply = bson.decode(data[21:], DECODE_OPTS)
        return reply.get('ok') == 1
    except (OSError, ValueError, struct.error, bson.errors.BSONError):
        return False


async def main_async(args):
    server = Server(args)
    if args.fixtures:
        server.load_fixtures(args.fixtures, args.db)
    proto = Protocol(server)
    listener = await asyncio.start_server(proto.serve, args.host, args.port,
                                          reuse_address=True, backlog=128)
    if args.pid_file:
        with open(args.pid_file, 'w') as f:
            f.write('%d\n' % os.getpid())
    port = listener.sockets[0].getsockname()[1]
    args.port = port
    log.info('ready: listening on %s:%d (pid %d, mongomock %s)', args.host, port, os.getpid(),
             server.mongomock.__version__)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def reaper():
        while True:
            await asyncio.sleep(min(30.0, args.cursor_timeout_ms / 4000.0))
            server.reap_cursors()

    reap_task = asyncio.ensure_future(reaper())
    await stop.wait()
    log.info('stopping (signal)')
    reap_task.cancel()
    listener.close()
    if args.pid_file:
        try:
            with open(args.pid_file) as f:
                if f.read().strip() == str(os.getpid()):
                    os.unlink(args.pid_file)
        except OSError:
            pass


def main():
    p = argparse.ArgumentParser(description='MongoDB wire-protocol test server (mongomock)')
    p.add_argument('--host', default='127.0.0.1')
    p.add_argument('--port', type=int, default=27017)
    p.add_argument('--fixtures', help='directory of <collection>.json fixtures')
    p.add_argument('--db', default='connector_test', help='database the fixtures load into')
    p.add_argument('--roles', default='read',
                   help='comma-separated roles connectionStatus reports (test-only)')
    p.add_argument('--user', default='connector_test_user',
                   help='user name connectionStatus reports (no real authentication)')
    p.add_argument('--pid-file')
    p.add_argument('--log', help='log file (default: stderr)')
    p.add_argument('--max-wire-version', type=int, default=17)
    p.add_argument('--cursor-timeout-ms', type=int, default=600000)
    p.add_argument('--ping', type=int, metavar='PORT',
                   help='only check that a server on 127.0.0.1:PORT answers ping')
    args = p.parse_args()
    if args.ping is not None:
        sys.exit(0 if ping(args.ping) else 1)
    handler = logging.FileHandler(args.log) if args.log else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter('%(asctime)s.%(msecs)03dZ %(levelname)s %(message)s',
                                           '%Y-%m-%dT%H:%M:%S'))
    logging.Formatter.converter = time.gmtime
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        asyncio.run(main_async(args))
    except OSError as e:
        log.error('cannot listen on %s:%d: %s', args.host, args.port, e)
        sys.exit(2)


if __name__ == '__main__':
    main()

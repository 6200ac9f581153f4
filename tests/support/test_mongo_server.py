#!/usr/bin/python3
"""Self-test of the MongoDB wire-protocol test server (tests/support/mongo_server.py).

Run with Debian's python (it needs python3-pymongo and python3-mongomock):
    /usr/bin/python3 tests/support/test_mongo_server.py [-v] [TestClass.test_name ...]
It starts the server with tests/support/mongo.sh in a temporary DIR and stops it at the end,
talking to it through pymongo and through raw sockets (handshake, OP_MSG flags, malformed
frames). Not wired into ctest: the MongoDB driver's tests use the server through mongo.sh.
"""

import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest

import bson
from bson.binary import Binary
from bson.codec_options import CodecOptions
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.max_key import MaxKey
from bson.min_key import MinKey
from bson.objectid import ObjectId
from bson.regex import Regex
from bson.timestamp import Timestamp
import pymongo
from pymongo.errors import (ConnectionFailure, DuplicateKeyError, ExecutionTimeout,
                            OperationFailure, WriteError)

HERE = os.path.dirname(os.path.abspath(__file__))
MONGO_SH = os.path.join(HERE, 'mongo.sh')
RAW_OPTS = CodecOptions(uuid_representation=0)  # keep binary subtype 4 as Binary
ENV = {}
DIR = None


def mongo_sh(action):
    subprocess.run([MONGO_SH, action, DIR], check=True, stdout=subprocess.DEVNULL)


def read_env():
    env = {}
    with open(os.path.join(DIR, 'mongo.env')) as f:
        for line in f:
            if line.startswith('export '):
                k, _, v = line[len('export '):].strip().partition('=')
                env[k] = v
    return env


def setUpModule():
    global DIR, ENV
    DIR = tempfile.mkdtemp(prefix='cn-mongo-selftest.')
    shutil.rmtree(DIR)
    mongo_sh('start')
    ENV = read_env()


def tearDownModule():
    if not DIR or not os.path.exists(os.path.join(DIR, 'mongo.env')):
        return
    # a command that raised anything but a clean error reply is a server bug
    bugs = [line for line in server_log().splitlines()
            if ' raised ' in line or ' unexpected ' in line or 'Traceback' in line]
    mongo_sh('stop')
    if bugs:
        raise AssertionError('the server log shows unexpected exceptions:\n' + '\n'.join(bugs))


def port():
    return int(ENV['CN_TEST_MONGO_PORT'])


def client(**kw):
    kw.setdefault('serverSelectionTimeoutMS', 3000)
    return pymongo.MongoClient(ENV['CN_TEST_MONGO_URI'], **kw)


def server_log():
    with open(ENV['CN_TEST_MONGO_LOG'], encoding='utf-8', errors='replace') as f:
        return f.read()


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


class Raw:
    """A raw wire-protocol connection."""

    def __init__(self, timeout=5.0):
        self.sock = socket.create_connection(('127.0.0.1', port()), timeout=timeout)
        self.req = 100

    def close(self):
        self.sock.close()

    def send(self, opcode, body, request_id=None):
        self.req += 1
        rid = self.req if request_id is None else request_id
        self.sock.sendall(struct.pack('<iiii', 16 + len(body), rid, 0, opcode) + body)
        return rid

    def op_msg(self, doc, flags=0, seqs=(), checksum=False, bad_checksum=False):
        body = struct.pack('<I', flags | (1 if checksum else 0)) + b'\x00' + bson.encode(doc)
        for ident, docs in seqs:
            payload = ident.encode() + b'\x00' + b''.join(bson.encode(d) for d in docs)
            body += b'\x01' + struct.pack('<i', 4 + len(payload)) + payload
        if checksum:
            self.req += 1
            header = struct.pack('<iiii', 16 + len(body) + 4, self.req, 0, 2013)
            crc = crc32c(header + body) ^ (1 if bad_checksum else 0)
            self.sock.sendall(header + body + struct.pack('<I', crc))
            return self.req
        return self.send(2013, body)

    def op_query(self, ns, doc):
        body = struct.pack('<i', 0) + ns.encode() + b'\x00' + struct.pack('<ii', 0, -1) + \
            bson.encode(doc)
        return self.send(2004, body)

    def recv_exact(self, n):
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.recv_into(view[got:], n - got)
            if not k:
                raise ConnectionError('closed')
            got += k
        return bytes(buf)

    def recv_raw(self):
        header = self.recv_exact(16)
        length = struct.unpack_from('<i', header, 0)[0]
        return header + self.recv_exact(length - 16)

    def recv(self):
        """(response_to, opcode, document)"""
        data = self.recv_raw()
        _, _, response_to, opcode = struct.unpack_from('<iiii', data, 0)
        if opcode == 2013:
            assert data[20] == 0
            return response_to, opcode, bson.decode(data[21:], RAW_OPTS)
        assert opcode == 1, opcode
        flags, cursor_id, start, n = struct.unpack_from('<iqii', data, 16)
        return response_to, opcode, dict(bson.decode(data[36:], RAW_OPTS), _flags=flags, _n=n)

    def command(self, doc, **kw):
        rid = self.op_msg(doc, **kw)
        to, op, reply = self.recv()
        assert to == rid and op == 2013
        return reply

    def closed(self):
        """Whether the server closed this connection (EOF)."""
        try:
            self.sock.settimeout(3.0)
            return self.sock.recv(1) == b''
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False


def server_alive():
    r = Raw()
    try:
        return r.command({'ping': 1, '$db': 'admin'})['ok'] == 1
    finally:
        r.close()


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = client()
        cls.db = cls.client.connector_test

    @classmethod
    def tearDownClass(cls):
        cls.client.close()


# ---------------------------------------------------------------------------------------------

class Handshake(Base):
    def test_op_query_is_master(self):
        r = Raw()
        rid = r.op_query('admin.$cmd', {'isMaster': 1, 'helloOk': True,
                                        'client': {'application': {'name': 'selftest'},
                                                   'driver': {'name': 'x', 'version': '1'}}})
        to, op, reply = r.recv()
        r.close()
        self.assertEqual((to, op), (rid, 1))
        self.assertEqual(reply['_n'], 1)
        self.assertEqual(reply['_flags'], 0)
        self.assertTrue(reply['ismaster'])
        self.assertTrue(reply['helloOk'])
        self.assertEqual(reply['minWireVersion'], 0)
        self.assertGreaterEqual(reply['maxWireVersion'], 6)
        self.assertNotIn('topologyVersion', reply)
        for k in ('maxBsonObjectSize', 'maxMessageSizeBytes', 'maxWriteBatchSize', 'localTime',
                  'logicalSessionTimeoutMinutes', 'connectionId'):
            self.assertIn(k, reply)

    def test_op_query_general_and_hello_over_op_msg(self):
        r = Raw()
        r.op_query('admin.$cmd', {'hello': 1})
        _, _, reply = r.recv()
        self.assertTrue(reply['isWritablePrimary'])
        r.op_query('connector_test.$cmd', {'$query': {'count': 'orders'},
                                           '$readPreference': {'mode': 'primary'}})
        self.assertEqual(r.recv()[2]['n'], 60)
        reply = r.command({'hello': 1, '$db': 'admin'})
        self.assertTrue(reply['isWritablePrimary'])
        r.op_query('connector_test.orders', {})
        reply = r.recv()[2]
        self.assertEqual(reply['_flags'] & 2, 2)  # QueryFailure: no legacy find
        r.close()

    def test_pymongo_handshake(self):
        self.assertEqual(self.client.admin.command('ping')['ok'], 1)
        info = self.client.admin.command('buildInfo')
        self.assertEqual(info['version'], '7.0.0-test')


class OpMsg(Base):
    def test_checksum(self):
        self.assertEqual(crc32c(b'123456789'), 0xE3069283)
        r = Raw()
        self.assertEqual(r.command({'ping': 1, '$db': 'admin'}, checksum=True)['ok'], 1)
        r.op_msg({'ping': 1, '$db': 'admin'}, checksum=True, bad_checksum=True)
        self.assertTrue(r.closed())
        r.close()
        self.assertTrue(server_alive())

    def test_more_to_come_sends_no_reply(self):
        r = Raw()
        r.op_msg({'insert': 'mtc', 'documents': [{'_id': 1}], '$db': 'selftest_mtc'}, flags=2)
        rid = r.op_msg({'count': 'mtc', '$db': 'selftest_mtc'})
        to, _, reply = r.recv()
        self.assertEqual(to, rid)
        self.assertEqual(reply['n'], 1)
        r.close()

    def test_unknown_required_flag_bit(self):
        r = Raw()
        reply = r.command({'ping': 1, '$db': 'admin'}, flags=1 << 5)
        self.assertEqual(reply['ok'], 0)
        # optional bits (16+, e.g. exhaustAllowed) are fine
        self.assertEqual(r.command({'ping': 1, '$db': 'admin'}, flags=1 << 16)['ok'], 1)
        r.close()

    def test_document_sequence(self):
        r = Raw()
        reply = r.command({'insert': 'seq', '$db': 'selftest_seq', 'ordered': True},
                          seqs=[('documents', [{'_id': i} for i in range(5)])])
        self.assertEqual(reply['n'], 5)
        self.assertEqual(self.client.selftest_seq.seq.count_documents({}), 5)
        r.close()

    def test_ignores_session_and_routing_fields(self):
        r = Raw()
        reply = r.command({'find': 'orders', 'filter': {'status': 'paid'}, '$db': 'connector_test',
                           'lsid': {'id': Binary(b'0' * 16, 4)}, 'txnNumber': Int64(1),
                           '$clusterTime': {'clusterTime': Timestamp(1, 1)},
                           '$readPreference': {'mode': 'secondaryPreferred'},
                           'readConcern': {'level': 'majority'}, 'apiVersion': '1'})
        self.assertEqual(reply['ok'], 1)
        self.assertEqual(len(reply['cursor']['firstBatch']), 12)
        r.close()

    def test_missing_db_and_unknown_command(self):
        r = Raw()
        self.assertEqual(r.command({'ping': 1})['code'], 40571)
        reply = r.command({'frobnicate': 1, '$db': 'admin'})
        self.assertEqual((reply['ok'], reply['code'], reply['codeName']),
                         (0, 59, 'CommandNotFound'))
        self.assertIn('errmsg', reply)
        r.close()


class Reads(Base):
    def test_find_options(self):
        orders = self.db.orders
        docs = list(orders.find({'status': 'paid'}, {'total': 1, 'status': 1})
                    .sort([('total', -1)]).skip(1).limit(5))
        self.assertEqual(len(docs), 5)
        self.assertEqual(set(docs[0]), {'_id', 'total', 'status'})
        totals = [d['total'].to_decimal() for d in docs]
        self.assertEqual(totals, sorted(totals, reverse=True))
        self.assertEqual(orders.count_documents({'status': 'paid'}), 12)
        found = list(orders.find({'customer_id': ObjectId('65a000000000000000000001')})
                     .hint('customer_id_1').comment('selftest'))
        self.assertTrue(found)
        self.assertEqual(len(list(orders.find().collation({'locale': 'en'}))), 60)
        self.assertIn('note cmd=find: collation ignored', server_log())
        # nested fields, arrays, Decimal128 against an int
        self.assertEqual(self.db.customers.count_documents({'address.country': 'DE'}), 3)
        self.assertTrue(self.db.orders.count_documents({'items.sku': 'SKU-001'}) > 0)
        r = Raw()
        reply = r.command({'find': 'orders', 'let': {'st': 'paid'}, '$db': 'connector_test',
                           'filter': {'$expr': {'$eq': ['$status', '$$st']}}})
        self.assertEqual(len(reply['cursor']['firstBatch']), 12)
        reply = r.command({'aggregate': 'orders', 'let': {'min': 3}, 'cursor': {},
                           'pipeline': [{'$match': {'$expr': {'$gte': ['$quantity', '$$min']}}},
                                        {'$count': 'n'}], '$db': 'connector_test'})
        self.assertEqual(reply['cursor']['firstBatch'][0]['n'],
                         self.db.orders.count_documents({'quantity': {'$gte': 3}}))
        r.close()
        n_big = self.db.orders.count_documents({'total': {'$gt': 100}})
        self.assertEqual(n_big, 33)
        self.assertEqual(self.db.orders.count_documents({'total': {'$gt': Decimal128('100')}}),
                         n_big)

    def test_find_batches_and_cursor_ids(self):
        r = Raw()
        reply = r.command({'find': 'orders', 'batchSize': 7, 'sort': {'_id': 1},
                           '$db': 'connector_test'})
        cur = reply['cursor']
        self.assertEqual(cur['ns'], 'connector_test.orders')
        self.assertEqual(len(cur['firstBatch']), 7)
        self.assertIsInstance(cur['id'], Int64)
        self.assertGreater(cur['id'], 2 ** 40)
        seen = len(cur['firstBatch'])
        cid = cur['id']
        while cid:
            reply = r.command({'getMore': Int64(cid), 'collection': 'orders', 'batchSize': 25,
                               '$db': 'connector_test'})
            seen += len(reply['cursor']['nextBatch'])
            cid = reply['cursor']['id']
        self.assertEqual(seen, 60)
        # default first batch is 101 documents; singleBatch closes the cursor
        reply = r.command({'find': 'orders', 'limit': 10, 'singleBatch': True, 'batchSize': 4,
                           '$db': 'connector_test'})
        self.assertEqual((len(reply['cursor']['firstBatch']), reply['cursor']['id']), (4, 0))
        reply = r.command({'find': 'orders', 'batchSize': 0, '$db': 'connector_test'})
        self.assertEqual(len(reply['cursor']['firstBatch']), 0)
        self.assertNotEqual(reply['cursor']['id'], 0)
        r.command({'killCursors': 'orders', 'cursors': [reply['cursor']['id']],
                   '$db': 'connector_test'})
        r.close()

    def test_batches_stop_at_16_mib(self):
        big = self.client.selftest_big.docs
        big.drop()
        big.insert_many([{'_id': i, 's': 'x' * (6 * 1024 * 1024)} for i in range(3)])
        r = Raw(timeout=30)
        reply = r.command({'find': 'docs', '$db': 'selftest_big'})
        self.assertEqual(len(reply['cursor']['firstBatch']), 2)
        reply = r.command({'getMore': reply['cursor']['id'], 'collection': 'docs',
                           '$db': 'selftest_big'})
        self.assertEqual((len(reply['cursor']['nextBatch']), reply['cursor']['id']), (1, 0))
        r.close()
        self.client.drop_database('selftest_big')

    def test_get_more_unknown_and_kill_cursors(self):
        r = Raw()
        reply = r.command({'getMore': Int64(2 ** 41 + 5), 'collection': 'orders',
                           '$db': 'connector_test'})
        self.assertEqual((reply['code'], reply['codeName']), (43, 'CursorNotFound'))
        before = self.client.admin.command('serverStatus')['metrics']['cursor']['open']['total']
        reply = r.command({'find': 'customers', 'batchSize': 2, '$db': 'connector_test'})
        cid = reply['cursor']['id']
        status = self.client.admin.command('serverStatus')
        self.assertEqual(status['metrics']['cursor']['open']['total'], before + 1)
        self.assertGreaterEqual(status['connections']['current'], 2)
        reply = r.command({'killCursors': 'customers', 'cursors': [cid, Int64(12345)],
                           '$db': 'connector_test'})
        self.assertEqual(reply['cursorsKilled'], [cid])
        self.assertEqual(reply['cursorsNotFound'], [12345])
        status = self.client.admin.command('serverStatus')
        self.assertEqual(status['metrics']['cursor']['open']['total'], before)
        reply = r.command({'getMore': cid, 'collection': 'customers', '$db': 'connector_test'})
        self.assertEqual(reply['code'], 43)
        r.close()

    def test_aggregate(self):
        rows = list(self.db.orders.aggregate([
            {'$match': {'status': {'$in': ['paid', 'shipped']}}},
            {'$group': {'_id': '$status', 'n': {'$sum': 1}, 'qty': {'$sum': '$quantity'}}},
            {'$sort': {'_id': 1}}]))
        self.assertEqual([r['_id'] for r in rows], ['paid', 'shipped'])
        self.assertEqual(rows[0]['n'], 12)
        # countDocuments arrives as an aggregate
        self.assertEqual(self.db.orders.count_documents({'status': 'paid'}, limit=5), 5)
        joined = list(self.db.orders.aggregate([
            {'$limit': 3},
            {'$lookup': {'from': 'customers', 'localField': 'customer_id',
                         'foreignField': '_id', 'as': 'customer'}},
            {'$unwind': '$customer'}, {'$project': {'customer.name': 1}}]))
        self.assertEqual(len(joined), 3)
        self.assertIn('name', joined[0]['customer'])
        piped = list(self.db.customers.aggregate([
            {'$match': {'_id': ObjectId('65a000000000000000000001')}},
            {'$lookup': {'from': 'orders', 'let': {'cid': '$_id'}, 'as': 'orders',
                         'pipeline': [{'$match': {'$expr': {'$eq': ['$customer_id', '$$cid']}}},
                                      {'$project': {'_id': 1}}]}}]))
        self.assertEqual(len(piped[0]['orders']),
                         self.db.orders.count_documents({'customer_id': piped[0]['_id']}))
        facet = list(self.db.orders.aggregate([{'$facet': {
            'n': [{'$count': 'n'}], 'by': [{'$sortByCount': '$status'}]}}]))
        self.assertEqual(facet[0]['n'], [{'n': 60}])
        self.assertEqual(len(facet[0]['by']), 5)
        union = list(self.db.products.aggregate([{'$project': {'sku': 1}},
                                                 {'$unionWith': 'customers'},
                                                 {'$unset': ['ssn', 'phone']}]))
        self.assertEqual(len(union), 35)
        self.assertFalse(any('ssn' in d for d in union))
        cur = self.db.orders.aggregate([{'$sort': {'_id': 1}}], batchSize=5)
        self.assertEqual(len(list(cur)), 60)
        with self.assertRaises(OperationFailure) as e:
            list(self.db.orders.aggregate([{'$densify': {'field': 'x', 'range': {}}}]))
        self.assertEqual(e.exception.code, 238)

    def test_aggregate_decimal128_and_mixed_types(self):
        rows = list(self.db.orders.aggregate([
            {'$unwind': '$items'},
            {'$group': {'_id': None, 'revenue': {'$sum': {'$multiply': ['$items.qty',
                                                                        '$items.price']}},
                        'max': {'$max': '$total'}, 'min': {'$min': '$total'},
                        'avg': {'$avg': '$total'}}}]))
        totals = [o['total'].to_decimal() for o in self.db.orders.find()]
        self.assertEqual(rows[0]['revenue'].to_decimal(), sum(totals))
        self.assertEqual(rows[0]['max'].to_decimal(), max(totals))
        self.assertEqual(rows[0]['min'].to_decimal(), min(totals))
        self.assertIsInstance(rows[0]['avg'], Decimal128)
        r = list(self.db.orders.aggregate([{'$project': {
            'r': {'$round': ['$total', 0]}, 'w': {'$round': ['$weight', 1]},
            'a': {'$add': ['$total', 1]}}}, {'$limit': 1}]))[0]
        self.assertIsInstance(r['r'], Decimal128)
        self.assertIsInstance(r['w'], float)
        mixed = list(self.db.customers.aggregate([{'$group': {
            '_id': None, 'hi': {'$max': '$loyalty'}, 'lo': {'$min': '$loyalty'}}}]))[0]
        self.assertIsInstance(mixed['hi'], str)   # strings sort after numbers
        self.assertIsInstance(mixed['lo'], int)
        buckets = list(self.db.orders.aggregate([{'$bucketAuto': {'groupBy': '$quantity',
                                                                  'buckets': 3}}]))
        self.assertEqual(sum(b['count'] for b in buckets), 60)

    def test_aggregate_explain_and_explain_command(self):
        plan = self.db.command('aggregate', 'orders', pipeline=[{'$match': {'status': 'paid'}}],
                               explain=True)
        self.assertEqual(plan['ok'], 1)
        self.assertIn('$cursor', plan['stages'][0])
        ex = self.db.command('explain', {'find': 'orders', 'filter': {'status': 'paid'}},
                             verbosity='executionStats')
        self.assertEqual(ex['queryPlanner']['winningPlan']['inputStage']['indexName'],
                         'status_1')
        self.assertEqual(ex['executionStats']['nReturned'], 12)
        for inner in ({'count': 'orders', 'query': {}}, {'distinct': 'orders', 'key': 'status'},
                      {'aggregate': 'orders', 'pipeline': [], 'cursor': {}}):
            self.assertEqual(self.db.command('explain', inner)['ok'], 1)
        # explaining a $out pipeline does not write
        self.db.command('explain', {'aggregate': 'orders', 'pipeline': [{'$out': 'exp_out'}],
                                    'cursor': {}})
        self.assertNotIn('exp_out', self.db.list_collection_names())

    def test_count_distinct(self):
        self.assertEqual(self.db.command('count', 'orders')['n'], 60)
        self.assertEqual(self.db.command('count', 'orders', query={'status': 'paid'},
                                         skip=2, limit=5)['n'], 5)
        self.assertEqual(self.db.orders.estimated_document_count(), 60)
        self.assertEqual(sorted(self.db.orders.distinct('status')),
                         ['cancelled', 'delivered', 'paid', 'pending', 'shipped'])
        self.assertEqual(len(self.db.orders.distinct('items.sku')),
                         len({i['sku'] for o in self.db.orders.find() for i in o['items']}))
        self.assertEqual(sorted(self.db.big_orders.distinct('status', {'status': {'$ne': 'paid'}})),
                         sorted({o['status'] for o in self.db.big_orders.find()} - {'paid'}))
        self.assertEqual(self.db.command('count', 'nope')['n'], 0)

    def test_views(self):
        big = list(self.db.big_orders.find({}, {'total': 1}).sort('total', 1))
        self.assertEqual(len(big), 33)
        self.assertTrue(all(d['total'].to_decimal() > 100 for d in big))
        self.assertEqual(self.db.big_orders.count_documents({'status': 'paid'}),
                         self.db.orders.count_documents({'status': 'paid',
                                                         'total': {'$gt': 100}}))
        with self.assertRaises(OperationFailure) as e:
            self.db.big_orders.insert_one({'x': 1})
        self.assertEqual(e.exception.code, 166)

    def test_type_zoo_round_trip(self):
        r = Raw()
        docs = {d['_id']: d['value'] for d in r.command(
            {'find': 'type_zoo', '$db': 'connector_test'})['cursor']['firstBatch']}
        r.close()
        self.assertIsInstance(docs['int64'], Int64)
        self.assertEqual(docs['int64'], 2 ** 53 + 1)
        self.assertEqual(docs['int32'], -2 ** 31)
        self.assertEqual(docs['uuid'].subtype, 4)
        self.assertEqual(docs['binary'].subtype if isinstance(docs['binary'], Binary) else 0, 0)
        self.assertEqual(str(docs['decimal128']), '1234567890.123456789012345678901234')
        self.assertIsInstance(docs['minKey'], MinKey)
        self.assertIsInstance(docs['maxKey'], MaxKey)
        self.assertIsInstance(docs['timestamp'], Timestamp)
        self.assertIsInstance(docs['regex'], Regex)
        self.assertNotEqual(docs['nan'], docs['nan'])
        self.assertEqual(docs['infinity'], float('inf'))
        self.assertIsNone(docs['null'])
        self.assertEqual(len(docs), 20)
        # sorting across BSON types does not fail
        self.assertEqual(len(list(self.db.type_zoo.find().sort('value', 1))), 20)


class Catalog(Base):
    def test_list_collections(self):
        colls = {c['name']: c for c in self.db.list_collections()}
        self.assertEqual(set(colls) - {'system.views'} >= {'customers', 'orders', 'products',
                                                          'type_zoo', 'big_orders'}, True)
        self.assertEqual(colls['big_orders']['type'], 'view')
        self.assertEqual(colls['big_orders']['options']['viewOn'], 'orders')
        self.assertEqual(colls['big_orders']['options']['pipeline'],
                         [{'$match': {'total': {'$gt': 100}}}])
        self.assertEqual(colls['orders']['type'], 'collection')
        self.assertIn('$jsonSchema', colls['products']['options']['validator'])
        self.assertEqual(colls['products']['info']['uuid'].subtype
                         if isinstance(colls['products']['info']['uuid'], Binary) else 4, 4)
        views = list(self.db.list_collections(filter={'type': 'view'}))
        self.assertEqual([v['name'] for v in views], ['big_orders'])
        names = list(self.db.list_collections(filter={'name': {'$regex': '^ord'}},
                                              nameOnly=True))
        self.assertEqual(names, [{'name': 'orders', 'type': 'collection'}])
        r = Raw()
        reply = r.command({'listCollections': 1, 'cursor': {'batchSize': 2},
                           '$db': 'connector_test'})
        self.assertEqual(reply['cursor']['ns'], 'connector_test.$cmd.listCollections')
        self.assertEqual(len(reply['cursor']['firstBatch']), 2)
        more = r.command({'getMore': reply['cursor']['id'], 'collection': '$cmd.listCollections',
                          '$db': 'connector_test'})
        self.assertGreaterEqual(len(more['cursor']['nextBatch']), 4)
        r.close()

    def test_list_indexes_and_databases(self):
        idx = {i['name']: i for i in self.db.products.list_indexes()}
        self.assertEqual(idx['sku_1']['key'], {'sku': 1})
        self.assertTrue(idx['sku_1']['unique'])
        self.assertIn('_id_', idx)
        self.assertEqual(set(self.db.orders.index_information()),
                         {'_id_', 'customer_id_1', 'status_1'})
        with self.assertRaises(OperationFailure) as e:
            self.db.command('listIndexes', 'no_such_collection')
        self.assertEqual(e.exception.code, 26)
        with self.assertRaises(OperationFailure) as e:
            self.db.command('listIndexes', 'big_orders')
        self.assertEqual(e.exception.code, 166)
        self.assertIn('connector_test', self.client.list_database_names())
        with self.assertRaises(OperationFailure) as e:
            self.db.command('listDatabases')
        self.assertEqual(e.exception.code, 13)

    def test_connection_status_roles(self):
        admin = self.client.admin
        st = self.db.command('connectionStatus', showPrivileges=True)['authInfo']
        self.assertEqual(st['authenticatedUserRoles'], [{'role': 'read', 'db': 'connector_test'}])
        actions = st['authenticatedUserPrivileges'][0]['actions']
        self.assertIn('find', actions)
        self.assertNotIn('insert', actions)
        try:
            admin.command('cnTestSetRoles', ['readWrite', {'role': 'dbAdmin', 'db': 'other'},
                                             'root'])
            st = self.db.command('connectionStatus', showPrivileges=True)['authInfo']
            self.assertEqual([r['role'] for r in st['authenticatedUserRoles']],
                             ['readWrite', 'dbAdmin', 'root'])
            self.assertEqual(st['authenticatedUserRoles'][2]['db'], 'admin')
            privs = st['authenticatedUserPrivileges']
            self.assertTrue(any('insert' in p['actions'] for p in privs))
            self.assertTrue(any(p['resource'].get('anyResource') for p in privs))
            self.assertNotIn('authenticatedUserPrivileges',
                             self.db.command('connectionStatus')['authInfo'])
            admin.command('cnTestSetRoles', [])
            st = self.db.command('connectionStatus')['authInfo']
            self.assertEqual(st['authenticatedUsers'], [])
            with self.assertRaises(OperationFailure) as e:
                self.db.command('cnTestSetRoles', ['read'])
            self.assertEqual(e.exception.code, 13)
        finally:
            admin.command('cnTestSetRoles', ['read'])

    def test_misc_commands(self):
        r = Raw()
        self.assertEqual(r.command({'endSessions': [{'id': Binary(b'1' * 16, 4)}],
                                    '$db': 'admin'})['ok'], 1)
        r.close()
        st = self.client.admin.command('serverStatus')
        self.assertIn('current', st['connections'])
        self.assertIn('total', st['metrics']['cursor']['open'])
        self.assertEqual(self.db.command('dbStats')['collections'] >= 4, True)


class Writes(Base):
    def setUp(self):
        self.w = self.client.selftest_writes
        self.client.drop_database('selftest_writes')

    def test_insert_update_delete(self):
        c = self.w.things
        c.insert_many([{'_id': i, 'n': i, 'tag': 'a' if i % 2 else 'b'} for i in range(10)])
        self.assertEqual(c.count_documents({}), 10)
        with self.assertRaises(DuplicateKeyError):
            c.insert_one({'_id': 3})
        res = c.update_many({'tag': 'a'}, {'$inc': {'n': 100}})
        self.assertEqual((res.matched_count, res.modified_count), (5, 5))
        self.assertEqual(c.find_one({'_id': 1})['n'], 101)
        res = c.update_one({'_id': 42}, {'$set': {'n': 42}}, upsert=True)
        self.assertEqual(res.upserted_id, 42)
        c.replace_one({'_id': 2}, {'replaced': True})
        self.assertEqual(c.find_one({'_id': 2}), {'_id': 2, 'replaced': True})
        c.update_one({'_id': 4}, [{'$set': {'double': {'$multiply': ['$n', 2]}}}])
        self.assertEqual(c.find_one({'_id': 4})['double'], 8)
        self.assertEqual(c.delete_many({'tag': 'b'}).deleted_count, 4)
        self.assertEqual(c.delete_one({}).deleted_count, 1)
        self.assertEqual(c.count_documents({}), 6)
        c.delete_many({})
        self.assertIn('things', self.w.list_collection_names())  # emptied, not dropped

    def test_find_and_modify(self):
        c = self.w.fam
        c.insert_many([{'_id': i, 'n': i} for i in range(3)])
        before = c.find_one_and_update({'_id': 1}, {'$set': {'n': 10}})
        self.assertEqual(before['n'], 1)
        after = c.find_one_and_update({'_id': 2}, {'$set': {'n': 20}},
                                      return_document=pymongo.ReturnDocument.AFTER,
                                      projection={'n': 1, '_id': 0})
        self.assertEqual(after, {'n': 20})
        self.assertEqual(c.find_one_and_delete({'_id': 0})['_id'], 0)
        up = c.find_one_and_update({'_id': 9}, {'$set': {'n': 9}}, upsert=True,
                                   return_document=pymongo.ReturnDocument.AFTER)
        self.assertEqual(up, {'_id': 9, 'n': 9})
        self.assertEqual(sorted(d['_id'] for d in c.find()), [1, 2, 9])

    def test_create_validator_views_indexes_rename_drop(self):
        self.w.create_collection('valid', validator={'$jsonSchema': {
            'bsonType': 'object', 'required': ['name'],
            'properties': {'name': {'bsonType': 'string'}, 'age': {'bsonType': 'int',
                                                                  'minimum': 0}}}})
        v = self.w.valid
        v.insert_one({'name': 'ok', 'age': 3})
        for bad in ({'age': 3}, {'name': 5}, {'name': 'x', 'age': -1}):
            with self.assertRaises(WriteError) as e:
                v.insert_one(bad)
            self.assertEqual(e.exception.code, 121)
        with self.assertRaises(WriteError) as e:
            v.update_one({'name': 'ok'}, {'$set': {'age': 'old'}})
        self.assertEqual(e.exception.code, 121)
        self.assertEqual(v.find_one({'name': 'ok'})['age'], 3)  # rolled back
        with self.assertRaises(WriteError):
            self.client.connector_test.products.insert_one({'sku': 'bad'})
        with self.assertRaises(OperationFailure) as e:
            self.w.command('create', 'valid')
        self.assertEqual(e.exception.code, 48)
        opts = {c['name']: c for c in self.w.list_collections()}
        self.assertIn('validator', opts['valid']['options'])

        self.w.command('create', 'young', viewOn='valid',
                       pipeline=[{'$match': {'age': {'$lt': 10}}}])
        self.assertEqual(self.w.young.count_documents({}), 1)
        self.w.command('create', 'young_names', viewOn='young',
                       pipeline=[{'$project': {'name': 1, '_id': 0}}])
        self.assertEqual(list(self.w.young_names.find()), [{'name': 'ok'}])

        res = self.w.command('createIndexes', 'valid', indexes=[
            {'key': {'name': 1}, 'name': 'name_1', 'unique': True}])
        self.assertEqual(res['numIndexesAfter'], 2)
        with self.assertRaises(DuplicateKeyError):
            v.insert_one({'name': 'ok'})
        v.drop_index('name_1')
        self.assertEqual(set(v.index_information()), {'_id_'})
        with self.assertRaises(OperationFailure) as e:
            v.drop_index('nope')
        self.assertEqual(e.exception.code, 27)

        self.client.admin.command('renameCollection', 'selftest_writes.valid',
                                  to='selftest_writes.renamed')
        names = self.w.list_collection_names()
        self.assertIn('renamed', names)
        self.assertNotIn('valid', names)
        with self.assertRaises(WriteError):
            self.w.renamed.insert_one({'age': 1})  # the validator moved along
        self.w.drop_collection('young_names')
        self.w.drop_collection('renamed')
        self.assertNotIn('renamed', self.w.list_collection_names())
        self.assertNotIn('young_names', self.w.list_collection_names())
        self.client.drop_database('selftest_writes')
        self.assertNotIn('selftest_writes', self.client.list_database_names())

    def test_out_and_merge(self):
        src = self.w.src
        src.insert_many([{'_id': i, 'k': i % 3, 'v': i} for i in range(9)])
        res = list(src.aggregate([{'$match': {'k': 0}}, {'$out': 'out_coll'}]))
        self.assertEqual(res, [])
        self.assertEqual(sorted(d['_id'] for d in self.w.out_coll.find()), [0, 3, 6])
        src.aggregate([{'$match': {'k': 1}}, {'$out': 'out_coll'}])
        self.assertEqual(sorted(d['_id'] for d in self.w.out_coll.find()), [1, 4, 7])
        src.aggregate([{'$group': {'_id': '$k', 'total': {'$sum': '$v'}}},
                       {'$merge': {'into': 'merged'}}])
        self.assertEqual(self.w.merged.count_documents({}), 3)
        self.w.merged.update_one({'_id': 0}, {'$set': {'extra': True}})
        src.aggregate([{'$group': {'_id': '$k', 'total': {'$sum': 1}}},
                       {'$merge': {'into': 'merged', 'whenMatched': 'merge'}}])
        self.assertEqual(self.w.merged.find_one({'_id': 0}), {'_id': 0, 'total': 3,
                                                              'extra': True})
        src.aggregate([{'$project': {'v': 1}},
                       {'$merge': {'into': {'db': 'selftest_writes', 'coll': 'merged'},
                                   'whenMatched': 'replace', 'whenNotMatched': 'discard'}}])
        self.assertEqual(self.w.merged.find_one({'_id': 0}), {'_id': 0, 'v': 0})
        self.assertEqual(self.w.merged.count_documents({}), 3)
        with self.assertRaises(OperationFailure):
            list(src.aggregate([{'$out': 'x'}, {'$match': {}}]))
        log = server_log()
        self.assertIn('cmd=aggregate db=selftest_writes coll=src stages=$match,$out', log)

    def test_restart_reloads_fixtures(self):
        self.client.connector_test.orders.delete_many({})
        self.assertEqual(self.client.connector_test.orders.count_documents({}), 0)
        mongo_sh('restart')
        self.assertEqual(read_env()['CN_TEST_MONGO_PORT'], str(port()))
        c = client()
        try:
            self.assertEqual(c.connector_test.orders.count_documents({}), 60)
        finally:
            c.close()


class FailPoint(Base):
    def tearDown(self):
        self.client.admin.command('configureFailPoint', 'failCommand', mode='off')

    def fp(self, mode, **data):
        return self.client.admin.command('configureFailPoint', 'failCommand', mode=mode,
                                         data=data)

    def test_error_code_times(self):
        self.fp({'times': 2}, failCommands=['count'], errorCode=11600,
                errorLabels=['RetryableWriteError'])
        r = Raw()
        for _ in range(2):
            reply = r.command({'count': 'orders', '$db': 'connector_test'})
            self.assertEqual((reply['ok'], reply['code']), (0, 11600))
            self.assertEqual(reply['errorLabels'], ['RetryableWriteError'])
        self.assertEqual(r.command({'count': 'orders', '$db': 'connector_test'})['n'], 60)
        r.close()

    def test_close_connection_and_app_name(self):
        self.fp('alwaysOn', failCommands=['find'], closeConnection=True, appName='victim')
        other = client(appname='bystander')
        try:
            self.assertEqual(other.connector_test.orders.find_one({'_id': 1}), None)
        finally:
            other.close()
        victim = client(appname='victim', retryReads=False)
        try:
            with self.assertRaises(ConnectionFailure):
                victim.connector_test.orders.find_one()
        finally:
            victim.close()
        self.assertTrue(server_alive())

    def test_block_with_max_time_ms(self):
        self.fp('alwaysOn', failCommands=['find', 'aggregate'], blockConnection=True,
                blockTimeMS=1500)
        t0 = time.monotonic()
        with self.assertRaises(ExecutionTimeout) as e:
            list(self.client.connector_test.orders.find().max_time_ms(200))
        took = time.monotonic() - t0
        self.assertEqual(e.exception.code, 50)
        self.assertLess(took, 1.0)
        self.assertGreaterEqual(took, 0.19)
        # without maxTimeMS it runs after the block
        t0 = time.monotonic()
        self.assertEqual(len(list(self.client.connector_test.orders.find())), 60)
        self.assertGreaterEqual(time.monotonic() - t0, 1.4)

    def test_blocked_command_does_not_block_others(self):
        self.fp('alwaysOn', failCommands=['find'], blockConnection=True, blockTimeMS=1500)
        done = []

        def blocked():
            r = Raw()
            done.append(len(r.command({'find': 'orders', '$db': 'connector_test'})
                            ['cursor']['firstBatch']))
            r.close()

        t = threading.Thread(target=blocked)
        t.start()
        time.sleep(0.1)
        t0 = time.monotonic()
        r = Raw()
        self.assertEqual(r.command({'count': 'orders', '$db': 'connector_test'})['n'], 60)
        r.close()
        self.assertLess(time.monotonic() - t0, 0.5)
        t.join(5)
        self.assertEqual(done, [60])

    def test_fail_point_admin_only_and_bad_mode(self):
        with self.assertRaises(OperationFailure) as e:
            self.client.connector_test.command('configureFailPoint', 'failCommand',
                                               mode='alwaysOn', data={'failCommands': []})
        self.assertEqual(e.exception.code, 13)
        with self.assertRaises(OperationFailure):
            self.fp('sometimes', failCommands=['find'])


class Robustness(Base):
    def test_malformed_frames(self):
        cases = [
            b'GET / HTTP/1.1\r\nHost: x\r\n\r\n',                 # garbage: absurd length
            struct.pack('<ii', 100, 1),                           # truncated header
            struct.pack('<iiii', 2 ** 31 - 1, 1, 0, 2013),        # huge length
            struct.pack('<iiii', 8, 1, 0, 2013),                  # length below the header
            struct.pack('<iiii', 40, 1, 0, 2013) + b'\x00' * 10,  # truncated body
            struct.pack('<iiii', 26, 1, 0, 2002) + b'\x00' * 10,  # legacy OP_INSERT
        ]
        for data in cases:
            s = socket.create_connection(('127.0.0.1', port()), timeout=5)
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            try:
                while s.recv(4096):
                    pass
            except ConnectionResetError:
                pass
            s.close()
            self.assertTrue(server_alive(), data)
        r = Raw()
        # bad BSON inside a well-framed OP_MSG gets an error reply, connection stays usable
        body = struct.pack('<I', 0) + b'\x00' + struct.pack('<i', 1000) + b'\x02abc'
        rid = r.send(2013, body)
        to, _, reply = r.recv()
        self.assertEqual((to, reply['ok']), (rid, 0))
        rid = r.send(2013, struct.pack('<I', 0) + b'\x07' + bson.encode({'ping': 1}))
        self.assertEqual(r.recv()[2]['ok'], 0)
        self.assertEqual(r.command({'ping': 1, '$db': 'admin'})['ok'], 1)
        # wrong types in commands answer errors
        for bad in ({'find': 5}, {'find': 'orders', 'filter': 'x'},
                    {'find': 'orders', 'limit': 'x'}, {'find': 'orders', 'batchSize': -1},
                    {'aggregate': 'orders', 'pipeline': {}, 'cursor': {}},
                    {'aggregate': 'orders', 'pipeline': [{'$match': {}, '$sort': {}}],
                     'cursor': {}},
                    {'insert': 'x', 'documents': 'no'}, {'getMore': 'x', 'collection': 'y'},
                    {'find': 'orders', 'filter': {'$where': 'sleep(1000)'}},
                    {'find': 'orders', 'maxTimeMS': -5}, {'distinct': 'orders'}):
            reply = r.command(dict(bad, **{'$db': 'connector_test'}))
            self.assertEqual(reply['ok'], 0, bad)
            self.assertIn('code', reply)
        r.close()
        self.assertTrue(server_alive())
        log = server_log()
        self.assertIn('out of range; closing', log)
        self.assertIn('truncated header', log)

    def test_many_connections_at_once(self):
        errors = []

        def work(i):
            try:
                r = Raw()
                for _ in range(5):
                    reply = r.command({'find': 'orders', 'batchSize': 10,
                                       '$db': 'connector_test'})
                    cid = reply['cursor']['id']
                    n = len(reply['cursor']['firstBatch'])
                    while cid:
                        reply = r.command({'getMore': cid, 'collection': 'orders',
                                           '$db': 'connector_test'})
                        n += len(reply['cursor']['nextBatch'])
                        cid = reply['cursor']['id']
                    assert n == 60, n
                r.close()
            except Exception as e:  # noqa: BLE001 (collected and reported)
                errors.append(repr(e))

        threads = [threading.Thread(target=work, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(errors, [])

    def test_command_log(self):
        self.client.connector_test.products.find_one({'sku': 'SKU-001'})
        log = server_log()
        self.assertIn('cmd=find db=connector_test coll=products', log)
        self.assertIn('cmd=isMaster db=admin', log)
        self.assertNotIn('SKU-001', log)  # no documents or filters in the log
        # client strings cannot forge log lines
        forged = 'x\n2030-01-01T00:00:00.000Z INFO conn=1 OP_MSG cmd=insert db=connector_test'
        r = Raw()
        self.assertEqual(r.command({'find': forged, '$db': 'connector_test'})['ok'], 1)
        self.assertEqual(r.command({forged: 1, '$db': 'connector_test'})['code'], 59)
        r.close()
        self.assertNotIn('\n2030-01-01', server_log())


if __name__ == '__main__':
    unittest.main()

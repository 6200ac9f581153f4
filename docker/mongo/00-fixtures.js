// Loads the test fixture (tests/fixtures/mongodb, mounted at /fixtures) into connector_test,
// the way tests/support/mongo_server.py loads it for the tests, and creates the connector's
// read-only user. Run once by the mongo image when its data directory is empty.
const fs = require('fs');
const dir = '/fixtures';
const target = db.getSiblingDB('connector_test');
const read = (f) => EJSON.parse(fs.readFileSync(`${dir}/${f}`, 'utf8'), { relaxed: false });

for (const f of fs.readdirSync(dir).sort()) {
  if (!f.endsWith('.json') || f.endsWith('.meta.json') || f === 'views.json') continue;
  const name = f.slice(0, -'.json'.length);
  const meta = fs.existsSync(`${dir}/${name}.meta.json`) ? read(`${name}.meta.json`) : {};
  target.createCollection(name, meta.validator ? { validator: meta.validator } : {});
  const docs = read(f);
  if (docs.length) target.getCollection(name).insertMany(docs);
  for (const ix of meta.indexes || []) {
    const { key, ...options } = ix;
    target.getCollection(name).createIndex(key, options);
  }
}
if (fs.existsSync(`${dir}/views.json`)) {
  for (const v of read('views.json')) target.createView(v.name, v.viewOn, v.pipeline);
}
target.createUser({
  user: 'connector_ro',
  pwd: process.env.CONNECTOR_RO_PASSWORD || 'connector-ro-change-me',
  roles: [{ role: 'read', db: 'connector_test' }],
});

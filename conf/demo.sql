-- demo.sql - the bundled demo database: a small online shop.
--
--   sqlite3 -bail demo.db < conf/demo.sql
--
-- Deterministic: every row is computed from its id, so two builds give the
-- same data. customers.phone is sensitive and internal_audit_log is internal;
-- conf/mappings/demo.yaml hides both from assistants.

PRAGMA foreign_keys = ON;

BEGIN;

CREATE TABLE customers (
	id INTEGER PRIMARY KEY,
	name TEXT NOT NULL,
	email TEXT NOT NULL UNIQUE,
	phone TEXT,
	country TEXT NOT NULL,
	city TEXT,
	is_active BOOLEAN NOT NULL DEFAULT 1,
	preferences JSON,
	created_at TEXT NOT NULL
);

CREATE TABLE products (
	id INTEGER PRIMARY KEY,
	sku TEXT NOT NULL,
	name TEXT NOT NULL,
	category TEXT NOT NULL,
	price REAL NOT NULL CHECK (price >= 0),
	in_stock BOOLEAN NOT NULL DEFAULT 1,
	created_at TEXT NOT NULL
);

CREATE TABLE orders (
	id INTEGER PRIMARY KEY,
	customer_id INTEGER NOT NULL REFERENCES customers (id),
	status TEXT NOT NULL DEFAULT 'pending'
		CHECK (status IN ('pending', 'paid', 'shipped', 'delivered', 'cancelled')),
	ordered_at TEXT NOT NULL,
	shipped_at TEXT,
	shipping_country TEXT NOT NULL
);

-- product_id references products without naming the column: its primary key.
CREATE TABLE order_items (
	order_id INTEGER NOT NULL REFERENCES orders (id),
	product_id INTEGER NOT NULL REFERENCES products,
	quantity INTEGER NOT NULL CHECK (quantity > 0),
	unit_price REAL NOT NULL,
	PRIMARY KEY (order_id, product_id)
);

CREATE TABLE internal_audit_log (
	id INTEGER PRIMARY KEY,
	actor TEXT NOT NULL,
	action TEXT NOT NULL,
	detail TEXT,
	logged_at TEXT NOT NULL
);

CREATE UNIQUE INDEX products_sku_key ON products (sku);
CREATE INDEX products_category_idx ON products (category);
CREATE INDEX orders_customer_id_idx ON orders (customer_id);
CREATE INDEX orders_status_ordered_at_idx ON orders (status, ordered_at);
CREATE INDEX order_items_product_id_idx ON order_items (product_id);

CREATE VIEW order_totals AS
SELECT o.id AS order_id,
       o.customer_id,
       o.status,
       o.ordered_at,
       count(*) AS item_count,
       sum(oi.quantity) AS units,
       round(sum(oi.quantity * oi.unit_price), 2) AS total
FROM orders AS o
JOIN order_items AS oi ON oi.order_id = o.id
GROUP BY o.id;

-- 60 customers
INSERT INTO customers (id, name, email, phone, country, city, is_active, preferences, created_at)
WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 60),
first_names(i, v) AS (VALUES (0, 'Alice'), (1, 'Bruno'), (2, 'Chiara'), (3, 'Dmitri'),
	(4, 'Elif'), (5, 'Farid'), (6, 'Greta'), (7, 'Hiro'), (8, 'Ines'), (9, 'Jonas'),
	(10, 'Keiko'), (11, 'Liam')),
last_names(i, v) AS (VALUES (0, 'Andersen'), (1, 'Bianchi'), (2, 'Costa'), (3, 'Dubois'),
	(4, 'Eriksen'), (5, 'Fischer'), (6, 'Garcia'), (7, 'Hughes'), (8, 'Ivanova'),
	(9, 'Jansen'), (10, 'Kowalski')),
places(i, country, city) AS (VALUES (0, 'US', 'Austin'), (1, 'DE', 'Berlin'),
	(2, 'FR', 'Lyon'), (3, 'GB', 'Leeds'), (4, 'JP', 'Osaka'), (5, 'BR', 'Recife'),
	(6, 'US', 'Denver'), (7, 'IT', 'Turin'))
SELECT n,
       f.v || ' ' || l.v,
       lower(f.v) || '.' || lower(l.v) || n || '@example.com',
       printf('+1-555-%04d', (n * 7919) % 10000),
       p.country,
       CASE WHEN n % 13 = 0 THEN NULL ELSE p.city END,
       CASE WHEN n % 9 = 0 THEN 0 ELSE 1 END,
       json_object('newsletter', json(CASE WHEN n % 2 = 0 THEN 'true' ELSE 'false' END),
                   'language', CASE p.country WHEN 'DE' THEN 'de' WHEN 'FR' THEN 'fr'
                                              WHEN 'JP' THEN 'ja' ELSE 'en' END),
       datetime('2023-01-01 09:00:00', '+' || (n * 5) || ' days', '+' || (n * 37 % 600) || ' minutes')
FROM seq
JOIN first_names AS f ON f.i = n % 12
JOIN last_names AS l ON l.i = (n * 7) % 11
JOIN places AS p ON p.i = (n * 3) % 8;

-- 24 products
INSERT INTO products (id, sku, name, category, price, in_stock, created_at) VALUES
	(1, 'BK-1001', 'The Pragmatic Databaser', 'books', 34.50, 1, '2022-11-01'),
	(2, 'BK-1002', 'Indexes in Practice', 'books', 29.00, 1, '2022-11-01'),
	(3, 'BK-1003', 'Query Plans Explained', 'books', 41.25, 1, '2022-12-15'),
	(4, 'BK-1004', 'Normal Forms for Humans', 'books', 19.99, 0, '2023-02-01'),
	(5, 'EL-2001', 'USB-C Dock', 'electronics', 89.00, 1, '2022-10-20'),
	(6, 'EL-2002', 'Mechanical Keyboard', 'electronics', 129.00, 1, '2022-10-20'),
	(7, 'EL-2003', 'Noise-Cancelling Headphones', 'electronics', 249.90, 1, '2023-01-10'),
	(8, 'EL-2004', '27-inch Monitor', 'electronics', 319.00, 1, '2023-03-05'),
	(9, 'EL-2005', 'Wireless Mouse', 'electronics', 24.95, 1, '2023-03-05'),
	(10, 'HM-3001', 'Espresso Machine', 'home', 399.00, 1, '2022-09-01'),
	(11, 'HM-3002', 'Pour-Over Kettle', 'home', 54.00, 1, '2022-09-01'),
	(12, 'HM-3003', 'Cast Iron Pan', 'home', 45.50, 0, '2023-04-12'),
	(13, 'HM-3004', 'Linen Napkins (set of 4)', 'home', 22.00, 1, '2023-04-12'),
	(14, 'OF-4001', 'Standing Desk', 'office', 549.00, 1, '2022-08-15'),
	(15, 'OF-4002', 'Ergonomic Chair', 'office', 429.00, 1, '2022-08-15'),
	(16, 'OF-4003', 'Desk Lamp', 'office', 39.90, 1, '2023-01-20'),
	(17, 'OF-4004', 'Notebook (dotted)', 'office', 12.50, 1, '2023-01-20'),
	(18, 'OF-4005', 'Fountain Pen', 'office', 75.00, 0, '2023-05-02'),
	(19, 'SP-5001', 'Yoga Mat', 'sports', 35.00, 1, '2023-02-14'),
	(20, 'SP-5002', 'Running Shoes', 'sports', 119.00, 1, '2023-02-14'),
	(21, 'SP-5003', 'Water Bottle', 'sports', 18.00, 1, '2023-02-14'),
	(22, 'SP-5004', 'Cycling Helmet', 'sports', 89.90, 1, '2023-06-01'),
	(23, 'TY-6001', 'Wooden Puzzle', 'toys', 27.00, 1, '2023-06-20'),
	(24, 'TY-6002', 'Building Blocks (500 pcs)', 'toys', 59.00, 1, '2023-06-20');

-- 150 orders
INSERT INTO orders (id, customer_id, status, ordered_at, shipped_at, shipping_country)
WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 150),
plan(n, customer_id, status, ordered_at) AS (
	SELECT n,
	       1 + (n * 37) % 60,
	       CASE n % 10 WHEN 0 THEN 'cancelled' WHEN 1 THEN 'pending' WHEN 2 THEN 'paid'
	                   WHEN 3 THEN 'shipped' ELSE 'delivered' END,
	       datetime('2023-07-01 08:00:00', '+' || (n * 2) || ' days',
	                '+' || (n * 53 % 720) || ' minutes')
	FROM seq)
SELECT plan.n, plan.customer_id, plan.status, plan.ordered_at,
       CASE WHEN plan.status IN ('shipped', 'delivered')
            THEN datetime(plan.ordered_at, '+' || (1 + plan.n % 4) || ' days') END,
       c.country
FROM plan JOIN customers AS c ON c.id = plan.customer_id;

-- 1 to 4 lines an order
INSERT INTO order_items (order_id, product_id, quantity, unit_price)
WITH RECURSIVE k(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM k WHERE k < 4)
SELECT o.id,
       1 + (o.id * 5 + k.k * 7) % 24,
       1 + (o.id + k.k) % 3,
       CASE WHEN o.id % 7 = 0 THEN round(p.price * 0.9, 2) ELSE p.price END
FROM orders AS o
JOIN k ON k.k <= 1 + (o.id * 7) % 4
JOIN products AS p ON p.id = 1 + (o.id * 5 + k.k * 7) % 24;

-- 20 internal audit entries
INSERT INTO internal_audit_log (id, actor, action, detail, logged_at)
WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 20)
SELECT n,
       CASE n % 3 WHEN 0 THEN 'ops-bot' WHEN 1 THEN 'admin@example.com' ELSE 'billing-job' END,
       CASE n % 4 WHEN 0 THEN 'refund' WHEN 1 THEN 'price_change' WHEN 2 THEN 'login'
                  ELSE 'export' END,
       'ticket INT-' || (1000 + n * 17),
       datetime('2023-08-01 00:00:00', '+' || (n * 31) || ' hours')
FROM seq;

COMMIT;

ANALYZE;

SELECT 1 /* x */
DELETE FROM audit_log
-- batchflag-db: resolve_dashboard_batch, version 2 (revision 0005). Once released,
-- never edit this file; a change is a new file (v3.sql) and a new Alembic revision.
--
-- Which batch should a dashboard show? Returns one row (batch_id, reason), the
-- first of these that finds a batch:
--   requested     p_requested_id, when it is not NULL (a missing id is an error)
--   current_flag  the current batch (currentBatchKey = 1)
--   in_progress   the newest batch whose batchStatus is 'InProgress'
--   incomplete    the newest batch whose batchStatus is not 'Completed' (or NULL)
--   most_recent   the newest batch
-- and no row at all when batchStatus is empty. "Newest" is the highest id.
-- Statuses compare with the column's collation (case-insensitive by default).
--
-- Errors (SQLSTATE 45000): 31001 when p_requested_id is 0 or negative, 31002 when
-- no row has that id.
--
-- Every step is an index lookup, never a scan: the primary key, the unique index
-- on currentBatchKey, and the index (batchStatus, id).
--
-- What changed from version 1: the "incomplete" step. Version 1 asked the
-- optimizer for a loose index scan over the range "not Completed"; whether it got
-- one depended on the server and on fresh statistics (MySQL 9.7 chose a range
-- scan, and every server read one index entry per incomplete batch right after a
-- bulk insert, until ANALYZE TABLE). Version 2 walks the distinct statuses itself,
-- from the highest down: each step is one ORDER BY ... LIMIT 1 probe of the index
-- (batchStatus, id) that lands on the newest batch of the next lower status, and
-- tells whether that status is 'Completed'. The probe compares the column with a
-- value read from the same column (by primary key), never with a variable, so it
-- keeps the column's collation on every server and for any table charset. The
-- cost is one probe per distinct status (plus one for NULL), never one per batch:
-- measured 7-10 index reads with 20,000 failed batches on MariaDB 10.11 and 11.8
-- and MySQL 9.7, statistics fresh or not.
--
-- Consistency: with autocommit on and no open transaction, the steps run in one
-- read-only REPEATABLE READ transaction with a consistent snapshot, so the answer
-- is true of one moment. Inside the caller's transaction they read with the
-- caller's isolation level (one snapshot under REPEATABLE READ, the default).
CREATE PROCEDURE resolve_dashboard_batch(IN p_requested_id BIGINT)
    READS SQL DATA
    SQL SECURITY DEFINER
    COMMENT 'batchflag-db v2'
BEGIN
    DECLARE v_own_txn TINYINT DEFAULT 0;
    DECLARE v_in_txn TINYINT DEFAULT 0;
    DECLARE v_id BIGINT DEFAULT NULL;
    DECLARE v_reason VARCHAR(16) DEFAULT NULL;
    DECLARE v_row BIGINT DEFAULT NULL;
    DECLARE v_last BIGINT DEFAULT NULL;
    DECLARE v_incomplete TINYINT DEFAULT NULL;
    DECLARE v_message VARCHAR(255);
    DECLARE CONTINUE HANDLER FOR NOT FOUND BEGIN END;
    DECLARE EXIT HANDLER FOR SQLEXCEPTION
    BEGIN
        IF v_own_txn = 1 THEN
            ROLLBACK;
        END IF;
        RESIGNAL;
    END;

    IF p_requested_id IS NOT NULL AND p_requested_id <= 0 THEN
        SET v_message = CONCAT('invalid batch id ', p_requested_id,
                               ': a batch id is a positive integer');
        SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 31001, MESSAGE_TEXT = v_message;
    END IF;

    -- Inside a transaction already? (The same test as set_current_batch.)
    IF @@autocommit = 0 THEN
        SET v_in_txn = 1;
    ELSE
        BEGIN
            DECLARE EXIT HANDLER FOR 1568 SET v_in_txn = 1;
            SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;
        END;
    END IF;
    IF v_in_txn = 0 THEN
        START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY;
        SET v_own_txn = 1;
    END IF;

    IF p_requested_id IS NOT NULL THEN
        SELECT id INTO v_id FROM batchStatus WHERE id = p_requested_id;
        IF v_id IS NULL THEN
            SET v_message = CONCAT('batch ', p_requested_id, ' does not exist in batchStatus');
            SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 31002, MESSAGE_TEXT = v_message;
        END IF;
        SET v_reason = 'requested';
    END IF;

    IF v_id IS NULL THEN
        SELECT id INTO v_id FROM batchStatus WHERE currentBatchKey = 1;
        IF v_id IS NOT NULL THEN
            SET v_reason = 'current_flag';
        END IF;
    END IF;

    IF v_id IS NULL THEN
        SELECT MAX(id) INTO v_id FROM batchStatus WHERE batchStatus = 'InProgress';
        IF v_id IS NOT NULL THEN
            SET v_reason = 'in_progress';
        END IF;
    END IF;

    IF v_id IS NULL THEN
        -- The walk: see "What changed from version 1" above.
        SELECT id INTO v_id FROM batchStatus WHERE batchStatus IS NULL ORDER BY id DESC LIMIT 1;
        SELECT id, batchStatus <> 'Completed' INTO v_row, v_incomplete FROM batchStatus
            WHERE batchStatus IS NOT NULL ORDER BY batchStatus DESC, id DESC LIMIT 1;
        WHILE v_row IS NOT NULL DO
            IF v_incomplete = 1 AND (v_id IS NULL OR v_row > v_id) THEN
                SET v_id = v_row;
            END IF;
            SET v_last = v_row;
            SET v_row = NULL;
            SELECT b.id, b.batchStatus <> 'Completed' INTO v_row, v_incomplete
                FROM batchStatus AS b
                WHERE b.batchStatus < (SELECT p.batchStatus FROM batchStatus AS p WHERE p.id = v_last)
                ORDER BY b.batchStatus DESC, b.id DESC LIMIT 1;
        END WHILE;
        IF v_id IS NOT NULL THEN
            SET v_reason = 'incomplete';
        END IF;
    END IF;

    IF v_id IS NULL THEN
        SELECT MAX(id) INTO v_id FROM batchStatus;
        IF v_id IS NOT NULL THEN
            SET v_reason = 'most_recent';
        END IF;
    END IF;

    IF v_own_txn = 1 THEN
        COMMIT;
        SET v_own_txn = 0;
    END IF;
    SELECT v_id AS batch_id, v_reason AS reason FROM DUAL WHERE v_id IS NOT NULL;
END

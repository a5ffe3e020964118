-- batchflag-db: resolve_dashboard_batch, version 1 (revision 0004). Once released,
-- never edit this file; a change is a new file (v2.sql) and a new Alembic revision.
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
-- on currentBatchKey, and the index (batchStatus, id). "Not Completed" is a range
-- on that index; GROUP BY batchStatus lets the server read only the last entry of
-- each status in the range (a loose index scan), so the cost grows with the
-- number of distinct statuses, not with the number of batches.
--
-- Why PREPARE for that one step: MariaDB 10.11 re-optimizes a statement of a
-- procedure on every CALL, but once any statement of a procedure has read rows
-- of batchStatus in the session, it no longer picks the loose index scan there
-- and reads every incomplete batch's index entry instead (measured: 8,000 reads
-- with 8,000 failed batches, against 16 in a fresh session or as a plain query).
-- A statement prepared afresh in each CALL is planned like a plain query. The
-- result passes through @batchflag_incomplete_id, cleared again right after.
--
-- Consistency: with autocommit on and no open transaction, the steps run in one
-- read-only REPEATABLE READ transaction with a consistent snapshot, so the answer
-- is true of one moment. Inside the caller's transaction they read with the
-- caller's isolation level (one snapshot under REPEATABLE READ, the default).
CREATE PROCEDURE resolve_dashboard_batch(IN p_requested_id BIGINT)
    READS SQL DATA
    SQL SECURITY DEFINER
    COMMENT 'batchflag-db v1'
BEGIN
    DECLARE v_own_txn TINYINT DEFAULT 0;
    DECLARE v_in_txn TINYINT DEFAULT 0;
    DECLARE v_id BIGINT DEFAULT NULL;
    DECLARE v_reason VARCHAR(16) DEFAULT NULL;
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
        -- A prepared statement, not a plain one: see "Why PREPARE" above.
        SET @batchflag_incomplete_id = NULL;
        PREPARE batchflag_incomplete FROM
            'SELECT MAX(id) INTO @batchflag_incomplete_id FROM batchStatus
                WHERE batchStatus <> ''Completed'' OR batchStatus IS NULL
                GROUP BY batchStatus ORDER BY MAX(id) DESC LIMIT 1';
        EXECUTE batchflag_incomplete;
        DEALLOCATE PREPARE batchflag_incomplete;
        SET v_id = @batchflag_incomplete_id;
        SET @batchflag_incomplete_id = NULL;
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

-- batchflag-db: set_current_batch, version 2 (revision 0004). Once released, never
-- edit this file; a change is a new file (v3.sql) and a new Alembic revision.
--
-- Version 1 plus the flip history: a call that changes the current batch writes
-- one row to currentBatchHistory in the same transaction as the flip, so the row
-- exists exactly when the flip does. A no-op call (the batch is already current)
-- writes no row, and a failed or rolled-back call leaves none: the history holds
-- one row per flip that changed something.
--
-- Makes batch p_batch_id the only current batch of batchStatus, atomically.
-- Returns one row: batch_id, previous_batch_id (NULL when none was current), changed.
--
-- Transactions: with autocommit on and no open transaction it runs in its own
-- transaction and commits it. Otherwise it joins the caller's transaction under a
-- savepoint: on error it rolls back to that savepoint (its own work only) and
-- re-raises; the caller's COMMIT or ROLLBACK decides the rest, history row included.
--
-- Concurrency: every flip first updates the single row of currentBatchLock, so
-- flips run one at a time and never deadlock one another on the unique index;
-- on Galera that write also makes any two concurrent flips conflict at
-- certification, so one of them is refused (error 1213) instead of both landing.
-- The history row is inserted while that lock is held, so on one server the
-- history ids follow the order in which the flips took effect.
--
-- History columns: changedAt is UTC_TIMESTAMP(6) of the INSERT (after the lock
-- was granted); account is USER(), the login of the calling session. Not
-- CURRENT_USER(): under SQL SECURITY DEFINER that names the definer, the same
-- for every caller. USER() and the connection id go through local variables so
-- statement-based replication logs their values, not the functions.
CREATE PROCEDURE set_current_batch(IN p_batch_id BIGINT)
    MODIFIES SQL DATA
    SQL SECURITY DEFINER
    COMMENT 'batchflag-db v2'
BEGIN
    -- 0: nothing to undo; 1: own transaction; 2: savepoint in the caller's transaction.
    DECLARE v_mode TINYINT DEFAULT 0;
    DECLARE v_in_txn TINYINT DEFAULT 0;
    DECLARE v_target BIGINT DEFAULT NULL;
    DECLARE v_previous BIGINT DEFAULT NULL;
    DECLARE v_changed TINYINT DEFAULT 0;
    DECLARE v_account VARCHAR(384) CHARACTER SET utf8mb4 DEFAULT NULL;
    DECLARE v_connection BIGINT UNSIGNED DEFAULT NULL;
    DECLARE v_message VARCHAR(255);
    DECLARE CONTINUE HANDLER FOR NOT FOUND BEGIN END;
    DECLARE EXIT HANDLER FOR SQLEXCEPTION
    BEGIN
        IF v_mode = 1 THEN
            ROLLBACK;
        ELSEIF v_mode = 2 THEN
            BEGIN
                -- After a deadlock the server has already rolled back the whole
                -- transaction and the savepoint is gone: nothing left to undo.
                DECLARE CONTINUE HANDLER FOR SQLEXCEPTION BEGIN END;
                ROLLBACK TO SAVEPOINT batchflag_flip;
            END;
        END IF;
        RESIGNAL;
    END;

    IF p_batch_id IS NULL OR p_batch_id <= 0 THEN
        SET v_message = CONCAT('invalid batch id ', COALESCE(p_batch_id, 'NULL'),
                               ': a batch id is a positive integer');
        SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 31001, MESSAGE_TEXT = v_message;
    END IF;

    -- Is the caller inside a transaction? With autocommit off it always is.
    -- With autocommit on, SET TRANSACTION fails with 1568 exactly when a
    -- transaction is open (MySQL and MariaDB alike; MySQL has no @@in_transaction).
    IF @@autocommit = 0 THEN
        SET v_in_txn = 1;
    ELSE
        BEGIN
            DECLARE EXIT HANDLER FOR 1568 SET v_in_txn = 1;
            SET TRANSACTION READ WRITE;
        END;
    END IF;
    IF v_in_txn = 0 THEN
        START TRANSACTION;
        SET v_mode = 1;
    ELSE
        SAVEPOINT batchflag_flip;
        SET v_mode = 2;
    END IF;

    UPDATE currentBatchLock SET flipCount = flipCount + 1 WHERE id = 1;
    IF ROW_COUNT() = 0 THEN
        SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 31003,
            MESSAGE_TEXT = 'the row of currentBatchLock is missing: run `batchflag doctor`';
    END IF;

    SELECT id INTO v_target FROM batchStatus WHERE id = p_batch_id FOR UPDATE;
    IF v_target IS NULL THEN
        SET v_message = CONCAT('batch ', p_batch_id, ' does not exist in batchStatus');
        SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 31002, MESSAGE_TEXT = v_message;
    END IF;

    SELECT id INTO v_previous FROM batchStatus WHERE currentBatchKey = 1 FOR UPDATE;
    IF v_previous IS NULL OR v_previous <> p_batch_id THEN
        -- Clear the old holder first: InnoDB checks the unique index row by row.
        IF v_previous IS NOT NULL THEN
            UPDATE batchStatus SET currentBatch = 0 WHERE id = v_previous;
        END IF;
        UPDATE batchStatus SET currentBatch = 1 WHERE id = p_batch_id;
        SET v_changed = 1;
        SET v_account = USER();
        SET v_connection = CONNECTION_ID();
        INSERT INTO currentBatchHistory
            (batchId, previousBatchId, `action`, changedAt, account, connectionId)
            VALUES (p_batch_id, v_previous, 'set', UTC_TIMESTAMP(6), v_account, v_connection);
    END IF;

    IF v_mode = 1 THEN
        COMMIT;
    ELSE
        RELEASE SAVEPOINT batchflag_flip;
    END IF;
    SET v_mode = 0;
    SELECT p_batch_id AS batch_id, v_previous AS previous_batch_id, v_changed AS changed;
END

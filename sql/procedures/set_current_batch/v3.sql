-- batchflag-db: set_current_batch, version 3 (revision 0006, and the Alembic operation
-- create_current_flag). Once released, never edit this file; a change is a new file.
--
-- A template: ${table}, ${id}, ${flag}, ${key}, ${lock} and ${history} stand for the
-- installation's names (batchflag_db.installation), rendered as quoted identifiers,
-- and ${table_name}, ${lock_name} for names in messages. Rendered with the default names
-- it is version 2 (set_current_batch/v2.sql), identifiers quoted.
--
-- Makes batch p_batch_id the only current batch, atomically, and writes one history
-- row when that changed something. Returns one row: batch_id, previous_batch_id
-- (NULL when none was current), changed.
--
-- Transactions: with autocommit on and no open transaction it runs in its own
-- transaction and commits it. Otherwise it joins the caller's transaction under a
-- savepoint: on error it rolls back to that savepoint (its own work only) and
-- re-raises; the caller's COMMIT or ROLLBACK decides the rest, history row included.
--
-- Concurrency: every flip first updates the single row of the lock table, so flips
-- run one at a time and never deadlock one another on the unique index; on Galera
-- and Group Replication that write also makes two concurrent flips conflict at
-- certification, so one of them is refused instead of both landing.
CREATE PROCEDURE set_current_batch(IN p_batch_id BIGINT)
    MODIFIES SQL DATA
    SQL SECURITY DEFINER
    COMMENT 'batchflag-db v3'
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

    UPDATE ${lock} SET flipCount = flipCount + 1 WHERE id = 1;
    IF ROW_COUNT() = 0 THEN
        SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 31003,
            MESSAGE_TEXT = 'the row of ${lock_name} is missing: run `batchflag doctor`';
    END IF;

    SELECT ${id} INTO v_target FROM ${table} WHERE ${id} = p_batch_id FOR UPDATE;
    IF v_target IS NULL THEN
        SET v_message = CONCAT('batch ', p_batch_id, ' does not exist in ${table_name}');
        SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 31002, MESSAGE_TEXT = v_message;
    END IF;

    SELECT ${id} INTO v_previous FROM ${table} WHERE ${key} = 1 FOR UPDATE;
    IF v_previous IS NULL OR v_previous <> p_batch_id THEN
        -- Clear the old holder first: InnoDB checks the unique index row by row.
        IF v_previous IS NOT NULL THEN
            UPDATE ${table} SET ${flag} = 0 WHERE ${id} = v_previous;
        END IF;
        UPDATE ${table} SET ${flag} = 1 WHERE ${id} = p_batch_id;
        SET v_changed = 1;
        SET v_account = USER();
        SET v_connection = CONNECTION_ID();
        INSERT INTO ${history}
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

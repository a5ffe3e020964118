-- batchflag-db: unset_current_batch, version 3 for an installation with a scope column
-- (the Alembic operation create_current_flag(scope_column=...)). Once released, never
-- edit this file; a change is a new file.
--
-- A template, as set_current_batch/v3-scoped.sql. Clears the current flag of batch
-- p_batch_id if it is the current batch of its scope; otherwise nothing (no error).
-- Locks the scope's lock row first, as set_current_batch does, so it never waits for
-- flips of other scopes. Returns one row: batch_id, changed.
CREATE PROCEDURE unset_current_batch(IN p_batch_id BIGINT)
    MODIFIES SQL DATA
    SQL SECURITY DEFINER
    COMMENT 'batchflag-db v3 scoped'
BEGIN
    -- 0: nothing to undo; 1: own transaction; 2: savepoint in the caller's transaction.
    DECLARE v_mode TINYINT DEFAULT 0;
    DECLARE v_in_txn TINYINT DEFAULT 0;
    DECLARE v_lock BIGINT UNSIGNED DEFAULT NULL;
    DECLARE v_target BIGINT DEFAULT NULL;
    DECLARE v_key TINYINT DEFAULT NULL;
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

    IF @@autocommit = 0 THEN
        SET v_in_txn = 1;
    ELSE
        BEGIN
            DECLARE EXIT HANDLER FOR 1568 SET v_in_txn = 1;
            SET TRANSACTION READ WRITE;
        END;
    END IF;
    -- The batch's scope, as its lock row's id: a plain read, before the flip's own
    -- transaction starts (with autocommit on, each statement here commits on its own).
    -- So the flip's transaction reads nothing before its first lock, and MariaDB's
    -- innodb_snapshot_isolation (on by default from 11.6) has no older snapshot to
    -- refuse the lock row against (error 1020).
    SELECT b.${id}, l.lockId INTO v_target, v_lock
        FROM ${table} AS b LEFT JOIN ${lock} AS l ON l.scopeValue = b.${scope}
        WHERE b.${id} = p_batch_id;
    IF v_target IS NULL THEN
        SET v_message = CONCAT('batch ', p_batch_id, ' does not exist in ${table_name}');
        SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 31002, MESSAGE_TEXT = v_message;
    END IF;

    IF v_lock IS NULL THEN
        -- Never flipped through the routines: create the scope's lock row, as set does.
        INSERT IGNORE INTO ${lock} (scopeValue, flipCount)
            SELECT b.${scope}, 0 FROM ${table} AS b WHERE b.${id} = p_batch_id;
        SELECT l.lockId INTO v_lock
            FROM ${table} AS b JOIN ${lock} AS l ON l.scopeValue = b.${scope}
            WHERE b.${id} = p_batch_id;
    END IF;

    IF v_in_txn = 0 THEN
        START TRANSACTION;
        SET v_mode = 1;
    ELSE
        SAVEPOINT batchflag_flip;
        SET v_mode = 2;
    END IF;

    UPDATE ${lock} SET flipCount = flipCount + 1 WHERE lockId = v_lock;
    SET v_target = NULL;
    SELECT b.${id}, b.${key} INTO v_target, v_key
        FROM ${table} AS b JOIN ${lock} AS l ON l.scopeValue = b.${scope}
        WHERE b.${id} = p_batch_id AND l.lockId = v_lock FOR UPDATE;
    IF v_target IS NULL THEN
        SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 31005,
            MESSAGE_TEXT = 'the batch moved to another scope or was deleted during the flip: retry';
    END IF;

    IF v_key = 1 THEN
        UPDATE ${table} SET ${flag} = 0 WHERE ${id} = p_batch_id;
        SET v_changed = 1;
        SET v_account = USER();
        SET v_connection = CONNECTION_ID();
        INSERT INTO ${history}
            (batchId, previousBatchId, `action`, changedAt, account, connectionId)
            VALUES (p_batch_id, p_batch_id, 'unset', UTC_TIMESTAMP(6), v_account, v_connection);
    END IF;

    IF v_mode = 1 THEN
        COMMIT;
    ELSE
        RELEASE SAVEPOINT batchflag_flip;
    END IF;
    SET v_mode = 0;
    SELECT p_batch_id AS batch_id, v_changed AS changed;
END

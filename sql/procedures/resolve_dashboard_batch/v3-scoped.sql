-- batchflag-db: resolve_dashboard_batch, version 3 for an installation with a scope
-- column. Once released, never edit this file; a change is a new file.
--
-- A template: ${table}, ${id}, ${scope} are the installation's quoted names,
-- ${table_name}, ${scope_name} its names in messages.
--
-- With a scope column the dashboard's answer depends on the scope: call
-- resolve_dashboard_batch_in_scope(id, scope). This keeps the one-argument signature
-- every installation has: given a batch id it resolves that batch ('requested');
-- given NULL it fails with 31006, naming the procedure to call.
CREATE PROCEDURE resolve_dashboard_batch(IN p_requested_id BIGINT)
    READS SQL DATA
    SQL SECURITY DEFINER
    COMMENT 'batchflag-db v3 scoped'
BEGIN
    DECLARE v_id BIGINT DEFAULT NULL;
    DECLARE v_message VARCHAR(255);
    DECLARE CONTINUE HANDLER FOR NOT FOUND BEGIN END;

    IF p_requested_id IS NULL THEN
        SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 31006, MESSAGE_TEXT =
            'one current batch per ${scope_name}: CALL resolve_dashboard_batch_in_scope(id, scope)';
    END IF;
    IF p_requested_id <= 0 THEN
        SET v_message = CONCAT('invalid batch id ', p_requested_id,
                               ': a batch id is a positive integer');
        SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 31001, MESSAGE_TEXT = v_message;
    END IF;
    SELECT ${id} INTO v_id FROM ${table} WHERE ${id} = p_requested_id;
    IF v_id IS NULL THEN
        SET v_message = CONCAT('batch ', p_requested_id, ' does not exist in ${table_name}');
        SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 31002, MESSAGE_TEXT = v_message;
    END IF;
    SELECT v_id AS batch_id, 'requested' AS reason;
END

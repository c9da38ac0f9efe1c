-- depends: 0005_keys
-- Language: the language a data subject asked to be answered in (the letters of the answer),
-- and the language a console user chose for the console (else their browser's is used).

ALTER TABLE dsr_requests ADD COLUMN language text;
ALTER TABLE console_users ADD COLUMN language text;

-- At most one signing key is active (not superseded): two instances creating
-- the first key at once, or two rotations racing, cannot leave two.
create unique index signing_keys_one_active on signing_keys ((superseded_at is null)) where superseded_at is null;

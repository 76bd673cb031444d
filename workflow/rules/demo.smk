# demo cohort stage: rules being written

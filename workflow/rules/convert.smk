# convert stage: rules being written

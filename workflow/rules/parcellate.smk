# parcellate stage: rules being written

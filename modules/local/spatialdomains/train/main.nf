process SPATIALDOMAINS_TRAIN {
    tag "${meta.id}"
    label 'process_medium'
    label 'process_gpu'

    input:
    tuple val(meta), path(h5ad), val(method), val(seed)    // prepared group, method, integer seed

    output:
    tuple val(meta), path("*.trained.h5ad"), emit: h5ad
    tuple val(meta), path("*.loss.csv")    , emit: loss
    tuple val(meta), path("*.pt")          , emit: checkpoint
    path "versions.yml"                    , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args      = task.ext.args ?: ''
    def prefix    = task.ext.prefix ?: "${meta.id}"
    // One module for both: CPU unless -profile gpu gave the task an accelerator
    def device    = task.accelerator ? 'cuda' : 'cpu'
    """
    export HOME="\$PWD" XDG_CACHE_HOME="\$PWD/.cache" MPLCONFIGDIR="\$PWD/.cache/matplotlib" NUMBA_CACHE_DIR="\$PWD/.cache/numba" TORCH_HOME="\$PWD/.cache/torch"
    # the memory budget of batch_mode=auto and of the memory check (GB; empty: probed)
    export SPATIALDOMAINS_MAX_MEMORY=${task.memory ? task.memory.toGiga() : ''}

    spatialdomains train \\
        -i ${h5ad} \\
        --method ${method} \\
        --seed ${seed} \\
        --device ${device} \\
        --threads ${task.cpus} \\
        --loss-csv ${prefix}.loss.csv \\
        --checkpoint ${prefix}.pt \\
        -o ${prefix}.trained.h5ad \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
        torch: \$(python3 -c 'import torch; print(torch.__version__)')
    END_VERSIONS
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    export SPATIALDOMAINS_MAX_MEMORY=${task.memory ? task.memory.toGiga() : ''}
    touch ${prefix}.trained.h5ad ${prefix}.loss.csv ${prefix}.pt

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
        torch: stub
    END_VERSIONS
    """
}

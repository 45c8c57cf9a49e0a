process SPATIALDOMAINS_PREPARE {
    tag "${meta.id}"
    label 'process_medium'

    input:
    tuple val(meta), path(h5ads), val(method)    // all slices of one group (sorted by sample), the method whose recipe to use

    output:
    tuple val(meta), path("*.prepared.h5ad"), emit: h5ad
    path "versions.yml"                     , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args     = task.ext.args ?: ''
    def prefix   = task.ext.prefix ?: "${meta.id}"
    def inputs   = [h5ads].flatten().collect { f -> "-i ${f}" }.join(' ')
    """
    export HOME="\$PWD" XDG_CACHE_HOME="\$PWD/.cache" MPLCONFIGDIR="\$PWD/.cache/matplotlib" NUMBA_CACHE_DIR="\$PWD/.cache/numba"

    spatialdomains prepare \\
        ${inputs} \\
        --method ${method} \\
        --threads ${task.cpus} \\
        -o ${prefix}.prepared.h5ad \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
    END_VERSIONS
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.prepared.h5ad

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
    END_VERSIONS
    """
}

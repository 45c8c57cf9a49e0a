process SPATIALDOMAINS_EVALUATE {
    tag "${meta.id}"
    label 'process_low'

    input:
    tuple val(meta), path(h5ad)

    output:
    tuple val(meta), path("*.metrics.json"), emit: json
    path "versions.yml"                    , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    export HOME="\$PWD" XDG_CACHE_HOME="\$PWD/.cache" MPLCONFIGDIR="\$PWD/.cache/matplotlib" NUMBA_CACHE_DIR="\$PWD/.cache/numba"

    spatialdomains evaluate --threads ${task.cpus} \\
        -i ${h5ad} \\
        --method ${meta.method} \\
        --group ${meta.group} \\
        -o ${prefix}.metrics.json \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    # container: ${workflow.containerEngine ? task.container : 'none'}
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
    END_VERSIONS
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    echo '{"method": "${meta.method}"}' > ${prefix}.metrics.json

    cat <<-END_VERSIONS > versions.yml
    # container: ${workflow.containerEngine ? task.container : 'none'}
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
    END_VERSIONS
    """
}

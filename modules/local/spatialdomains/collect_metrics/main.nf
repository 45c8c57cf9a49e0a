process SPATIALDOMAINS_COLLECT_METRICS {
    tag "${meta.id}"
    label 'process_single'

    input:
    tuple val(meta), path(metrics), path(domains)    // every method x seed of one group, sorted by id

    output:
    tuple val(meta), path("*.metrics.csv"), emit: csv
    path "versions.yml"                   , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    export HOME="\$PWD" XDG_CACHE_HOME="\$PWD/.cache" MPLCONFIGDIR="\$PWD/.cache/matplotlib" NUMBA_CACHE_DIR="\$PWD/.cache/numba"

    spatialdomains collect-metrics \\
        ${[metrics].flatten().collect { "--metrics ${it}" }.join(' ')} \\
        ${[domains].flatten().collect { "--domains ${it}" }.join(' ')} \\
        -o ${prefix}.metrics.csv \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
    END_VERSIONS
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.metrics.csv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
    END_VERSIONS
    """
}

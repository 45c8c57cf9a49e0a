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

    collect_metrics.py \\
        --metrics ${[metrics].flatten().join(' ')} \\
        --domains ${[domains].flatten().join(' ')} \\
        -o ${prefix}.metrics.csv \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
        pandas: \$(python3 -c 'import pandas; print(pandas.__version__)')
    END_VERSIONS
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.metrics.csv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
        pandas: stub
    END_VERSIONS
    """
}

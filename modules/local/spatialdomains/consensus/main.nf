process SPATIALDOMAINS_CONSENSUS {
    tag "${meta.id}"
    label 'process_single'

    input:
    tuple val(meta), path(h5ads), val(method)    // every seed of one group x method, clustered, sorted by id; whose domains

    output:
    tuple val(meta), path("*.metrics.json"), emit: json
    tuple val(meta), path("*.domains.csv") , emit: domains
    path "versions.yml"                    , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    export HOME="\$PWD" XDG_CACHE_HOME="\$PWD/.cache" MPLCONFIGDIR="\$PWD/.cache/matplotlib" NUMBA_CACHE_DIR="\$PWD/.cache/numba"

    spatialdomains consensus \\
        ${[h5ads].flatten().collect { "-i ${it}" }.join(' ')} \\
        --method ${method} \\
        --domains-csv ${prefix}.domains.csv \\
        --metrics ${prefix}.metrics.json \\
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
    echo '{"method": "${method}", "seed": "consensus"}' > ${prefix}.metrics.json
    touch ${prefix}.domains.csv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
    END_VERSIONS
    """
}

process SPATIALDOMAINS_ANALYSE {
    tag "${meta.id}"
    label 'process_low'

    input:
    tuple val(meta), path(h5ad), val(method)    // one group x method x seed: clustered AnnData, its method
    path gmt                       // gene sets (GMT) for the enrichment, or assets/NO_FILE (DEG only)

    output:
    tuple val(meta), path("*.{deg,go}.csv"), emit: tables     // <id>.deg.csv, and <id>.go.csv with gene sets
    tuple val(meta), path("*.png")         , emit: plots, optional: true
    path "versions.yml"                    , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    def sets   = gmt.name != 'NO_FILE' ? "--gmt ${gmt} --go-csv ${prefix}.go.csv" : ''
    """
    export HOME="\$PWD" XDG_CACHE_HOME="\$PWD/.cache" MPLCONFIGDIR="\$PWD/.cache/matplotlib" NUMBA_CACHE_DIR="\$PWD/.cache/numba"

    spatialdomains analyse \\
        -i ${h5ad} \\
        --method ${method} \\
        ${sets} \\
        --deg-csv ${prefix}.deg.csv \\
        --plots-dir . \\
        --prefix ${prefix} \\
        --threads ${task.cpus} \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
    END_VERSIONS
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    def go     = gmt.name != 'NO_FILE' ? "${prefix}.go.csv ${prefix}_go.png" : ''
    """
    touch ${prefix}.deg.csv ${prefix}_volcano.png ${go}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
    END_VERSIONS
    """
}
